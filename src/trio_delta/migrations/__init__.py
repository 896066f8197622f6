"""Versioned SQL migrations, applied in order by :func:`trio_delta.migrate`."""
