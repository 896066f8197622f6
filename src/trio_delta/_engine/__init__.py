"""The engine: one module per service, each a Trio task under the client's nursery.

The engine imports storage only through ``_store.base``; it never touches
psycopg or asyncio, which keeps it testable under Trio's autojump clock.
"""
