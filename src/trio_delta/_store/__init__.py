"""Storage port (``base``) and its adapters (``postgres``, ``memory``)."""
