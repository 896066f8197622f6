"""docs/cli.md has a section for every command, naming every one of its options."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from trio_delta.cli import cli

PAGE = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def commands(cmd: click.Command, path: tuple[str, ...] = ()) -> Iterator[tuple[str, click.Command]]:
    if path:
        yield " ".join(("trio-delta", *path)), cmd
    if isinstance(cmd, click.Group):
        for name in cmd.list_commands(click.Context(cmd)):
            sub = cmd.get_command(click.Context(cmd), name)
            assert sub is not None
            yield from commands(sub, (*path, name))


COMMANDS = list(commands(cli))


def section(title: str) -> str:
    parts = re.split(r"^## ", PAGE.read_text(), flags=re.M)
    found = [p for p in parts if p.split("\n", 1)[0].strip() == f"`{title}`"]
    assert found, f"{PAGE.name} has no section '## `{title}`'"
    return found[0]


@pytest.mark.parametrize(("title", "command"), COMMANDS, ids=[t for t, _ in COMMANDS])
def test_command_and_its_options_are_documented(title: str, command: click.Command) -> None:
    text = section(title)
    for param in command.params:
        for opt in (*param.opts, *param.secondary_opts):
            if opt.startswith("-"):
                assert re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", text), (
                    f"{PAGE.name}: {title} does not mention {opt}"
                )
