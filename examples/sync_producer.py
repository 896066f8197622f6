"""Inform from synchronous code (a script, Django, Flask): the producer on a
plain psycopg connection, in the application's own transaction.

An order import: each order row and its ``Shipment`` resource are written
in one transaction, so a shipment is worked exactly for the orders that
were committed. A batch with a bad order is refused before anything is
sent, and the application decides what to do with its transaction.

No Trio here: the workers run elsewhere (``trio-delta run``, or a Trio
process with ``open_delta_client``), woken when the transaction commits.

Run: python examples/sync_producer.py [DSN]   (default: $TRIO_DELTA_DSN or local)
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import ClassVar

import psycopg

import trio_delta as delta
from trio_delta import producer

DSN = (sys.argv[1] if len(sys.argv) > 1 else None) or os.environ.get(
    "TRIO_DELTA_DSN", "host=127.0.0.1 user=postgres dbname=test"
)
SCHEMA = os.environ.get("EXAMPLE_SCHEMA", "sync_example")


@dataclass
class Shipment:
    kind: ClassVar[str] = "shipment"
    order_id: str
    address: str

    def id(self) -> str:
        return self.order_id


def import_orders(conn: psycopg.Connection, orders: list[tuple[str, str]]) -> None:
    """The orders and their shipments, all or nothing."""
    with conn.transaction():
        for order_id, address in orders:
            conn.execute(
                f"insert into {SCHEMA}.orders (id, address) values (%s, %s)", [order_id, address]
            )
        results = producer.inform_many(conn, [Shipment(o, a) for o, a in orders], schema=SCHEMA)
    print(f"imported {len(results)} orders:", ", ".join(r.resource.object_id for r in results))


def main() -> None:
    # The schema is created by `trio-delta migrate --schema sync_example`.
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute(
            f"create table if not exists {SCHEMA}.orders (id text primary key, address text)"
        )
        conn.execute(f"truncate {SCHEMA}.orders")
        conn.execute(f"delete from {SCHEMA}.resources where kind = 'shipment'")

        import_orders(conn, [("o-1", "1 Main St"), ("o-2", "2 High St")])
        try:
            import_orders(conn, [("o-3", "3 Low St"), ("", "nowhere")])
        except delta.ObjectError as exc:
            print(f"refused: {exc} (index {exc.index}); the import was rolled back")

        # A shipment informed again unchanged is not rescheduled.
        again = producer.inform(conn, Shipment("o-1", "1 Main St"), schema=SCHEMA)
        print(f"o-1 again: changed={again.changed}")

        orders = [row[0] for row in conn.execute(f"select id from {SCHEMA}.orders order by id")]
        shipments = conn.execute(
            f"select object_id, state from {SCHEMA}.resources where kind = 'shipment' "
            "order by object_id"
        ).fetchall()
    print("orders:", orders)
    print("shipments:", shipments)


if __name__ == "__main__":
    main()
