"""The engine: one module per service, each a Trio task under the client's nursery.

The engine reaches storage only through the store port (``_store.port``); it never touches
psycopg or asyncio, which keeps it testable under Trio's autojump clock.
"""
