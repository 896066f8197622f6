"""Every Python block in README.md and docs/ marked as runnable runs, as written.

The convention, in the Markdown source:

* ``<!-- runs -->`` on the line before a fenced ``python`` block marks it as
  a complete program. Fragments (most blocks) stay unmarked.
* ``<!-- output -->`` on the line before a fenced ``text`` block, after a
  runnable block, is that program's exact standard output.
* A runnable block that uses the database sets
  ``DSN = "host=127.0.0.1 user=postgres dbname=test"`` and ``SCHEMA = "..."``
  on lines of their own; the test points them at the test database
  (``pg_dsn``) and a fresh schema of its own, dropped afterwards.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUNS = "<!-- runs -->"
OUTPUT = "<!-- output -->"
DSN_LINE = re.compile(r'^DSN = "host=127\.0\.0\.1 user=postgres dbname=test"$', re.M)
SCHEMA_LINE = re.compile(r'^SCHEMA = "[a-z_][a-z0-9_]*"(?P<comment>  #.*)?$', re.M)


@dataclass
class Block:
    page: Path
    line: int  # of the opening fence, 1-based
    code: str
    output: str | None

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def fenced(lines: list[str], start: int, language: str, where: str) -> tuple[str, int]:
    """The body of the fence opening at ``lines[start]``, and the index after it."""
    fence = lines[start].strip()
    if fence != f"```{language}":
        raise AssertionError(
            f"{where}: expected a ```{language} block after the marker, found {fence!r}"
        )
    end = start + 1
    while end < len(lines) and lines[end].strip() != "```":
        end += 1
    if end == len(lines):
        raise AssertionError(f"{where}: unclosed code block")
    return "\n".join(lines[start + 1 : end]) + "\n", end + 1


def collect(page: Path) -> list[Block]:
    lines = page.read_text().splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        marker = lines[i].strip()
        where = f"{page.relative_to(ROOT)}:{i + 1}"
        if marker == RUNS:
            code, after = fenced(lines, i + 1, "python", where)
            blocks.append(Block(page, i + 2, code, None))
            i = after
        elif marker == OUTPUT:
            if not blocks:
                raise AssertionError(f"{where}: {OUTPUT} without a runnable block before it")
            text, after = fenced(lines, i + 1, "text", where)
            blocks[-1].output = text
            i = after
        else:
            i += 1
    return blocks


BLOCKS = [block for page in PAGES for block in collect(page)]


def test_runnable_blocks_are_found() -> None:
    pages = {block.page.name for block in BLOCKS}
    assert {"concepts.md", "workers.md", "configuration.md"} <= pages, pages


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: b.where)
def test_block_runs(block: Block, pg_dsn: str, schema_name: str, tmp_path: Path) -> None:
    code = block.code
    if "DSN" in code:
        assert DSN_LINE.search(code), f"{block.where}: set DSN on a line of its own"
        assert SCHEMA_LINE.search(code), f"{block.where}: set SCHEMA on a line of its own"
        assert 'schema="' not in code, f"{block.where}: use SCHEMA, not a literal schema"
        code = DSN_LINE.sub(lambda _: f"DSN = {pg_dsn!r}", code)
        code = SCHEMA_LINE.sub(lambda _: f"SCHEMA = {schema_name!r}", code)
    script = tmp_path / "block.py"
    script.write_text(code)
    proc = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert proc.returncode == 0, f"{block.where} failed:\n{proc.stdout}\n{proc.stderr}"
    if block.output is not None:
        assert proc.stdout == block.output, (
            f"{block.where}: the output shown in the docs differs from the real one:\n{proc.stdout}"
        )
