"""A Trio application that informs in its own transaction, on psycopg for Trio.

``trio_delta.connect()`` opens a psycopg ``AsyncConnection`` that runs on
Trio. The application writes its invoice and informs the ``Invoice`` in the
same transaction with ``client.inform_tx(conn, ...)``: the workers see it
when, and only if, the transaction commits. A rolled-back one leaves
nothing to work.

Run: python examples/trio_app.py [DSN]   (default: $TRIO_DELTA_DSN or local)
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import ClassVar

import trio

import trio_delta as delta

DSN = (sys.argv[1] if len(sys.argv) > 1 else None) or os.environ.get(
    "TRIO_DELTA_DSN", "host=127.0.0.1 user=postgres dbname=test"
)
SCHEMA = os.environ.get("EXAMPLE_SCHEMA", "trio_example")


@dataclass
class Invoice:
    kind: ClassVar[str] = "invoice"
    number: str
    total_cents: int

    def id(self) -> str:
        return self.number


class InvoiceMailer(delta.Controller[Invoice]):
    async def work(self, resource: delta.Resource[Invoice]) -> None:
        invoice = resource.object
        print(f"mailing invoice {invoice.number} ({invoice.total_cents / 100:.2f})")


async def bill(client: delta.Client, number: str, cents: int, *, commit: bool) -> None:
    async with delta.connect(DSN) as conn:
        await conn.execute(
            f"insert into {SCHEMA}.invoices (number, total_cents) values (%s, %s)",
            [number, cents],
        )
        result = await client.inform_tx(conn, Invoice(number, cents))
        print(f"{number}: informed ({result.resource.state.value}), not yet committed")
        if commit:
            await conn.commit()
        else:
            await conn.rollback()
            print(f"{number}: rolled back")


async def main() -> None:
    await delta.migrate(DSN, schema=SCHEMA)
    async with delta.connect(DSN, autocommit=True) as conn:
        await conn.execute(
            f"create table if not exists {SCHEMA}.invoices "
            "(number text primary key, total_cents int)"
        )
        await conn.execute(f"truncate {SCHEMA}.invoices")
        await conn.execute(f"delete from {SCHEMA}.resources")

    mailer = InvoiceMailer()
    controllers = delta.Controllers()
    delta.add_controller(controllers, mailer)
    async with delta.open_delta_client(DSN, controllers, config=delta.Config(schema=SCHEMA)) as c:
        with c.subscribe(delta.EventCategory.OBJECT_SYNCED) as synced:
            await bill(c, "INV-2", 990, commit=False)
            await bill(c, "INV-1", 4250, commit=True)
            with trio.fail_after(10):
                event = await synced.receive()
        print(f"{event.resource.object_id} synced")
        rows = await c.list_resources(kind="invoice")
        print("resources:", [(r.object_id, r.state.value) for r in rows])


if __name__ == "__main__":
    trio.run(main)
