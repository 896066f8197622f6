"""Connection strings: parsing and redaction (passwords never leave here)."""

from __future__ import annotations

import os
import re

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from .._errors import ConfigError

#: Seconds to wait for a connection unless the DSN (or PGCONNECT_TIMEOUT) says
#: otherwise: libpq's own default is to wait as long as TCP does, minutes
#: for an unreachable host, and nothing should hang that long unannounced.
CONNECT_TIMEOUT = 10

_URL_PASSWORD = re.compile(r"(://[^:/@\s]*:)[^@\s]*(@)")
_KV_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def redact(text: str) -> str:
    """``text`` with anything that looks like a DSN password replaced by ``***``."""
    text = _URL_PASSWORD.sub(r"\1***\2", text)
    return _KV_PASSWORD.sub(r"\1***", text)


def normalize_dsn(dsn: str) -> str:
    """Check ``dsn`` parses as a libpq connection string or URL; return it in
    key=value form. Raises :class:`ConfigError` (without the password)."""
    if not isinstance(dsn, str):
        raise ConfigError(f"dsn must be a string, got {type(dsn).__name__}")
    try:
        return make_conninfo(dsn)
    except Exception as exc:  # psycopg raises ProgrammingError for bad syntax
        raise ConfigError(f"invalid connection string: {redact(str(exc))}") from None


def describe_dsn(dsn: str) -> str:
    """A password-free description for logs: ``user@host:port/dbname``."""
    try:
        params = conninfo_to_dict(dsn)
    except Exception:
        return "<unparsable dsn>"
    user = params.get("user") or ""
    host = params.get("host") or "localhost"
    port = params.get("port") or "5432"
    db = params.get("dbname") or ""
    return f"{user}@{host}:{port}/{db}" if user else f"{host}:{port}/{db}"


def with_connect_timeout(conninfo: str) -> str:
    """``conninfo`` with ``connect_timeout`` set when neither it nor the
    environment sets one, so an unreachable server fails in seconds."""
    if conninfo_to_dict(conninfo).get("connect_timeout") or os.environ.get("PGCONNECT_TIMEOUT"):
        return conninfo
    return make_conninfo(conninfo, connect_timeout=CONNECT_TIMEOUT)
