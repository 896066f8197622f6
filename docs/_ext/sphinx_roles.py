"""A griffe extension for the API reference: Sphinx-style docstrings to Markdown.

trio_delta's docstrings use reStructuredText roles (``:class:`Config```,
``:meth:`work```) and literal blocks introduced by ``::``. mkdocstrings
renders Markdown, where a role would show as ``:class:`` followed by code.
This rewrites each role to an mkdocstrings cross-reference when its target is
documented on the site (looked up relative to the enclosing class, then in
``trio_delta`` and ``trio_delta.testing``), else to plain code, and turns
``::`` into ``:``. Docstrings in src/ stay as they are.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?:class|meth|func|attr|exc|data|mod|obj|const):`(~?)([^`<>]+)`")
LITERAL_BLOCK = re.compile(r"(\S)::[ \t]*$", re.M)
BARE_LITERAL_BLOCK = re.compile(r"^[ \t]*::[ \t]*$\n?", re.M)
PUBLIC_MODULES = ("trio_delta", "trio_delta.testing")


def _public(name: str) -> bool:
    return not name.startswith("_")


class SphinxRoles(griffe.Extension):
    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        if pkg.name != "trio_delta":
            return
        anchors: set[str] = set()
        public_path: dict[str, str] = {}  # canonical path -> path on the site
        for module_path in PUBLIC_MODULES:
            module = pkg if module_path == "trio_delta" else pkg.get_member(
                module_path.removeprefix("trio_delta."))
            for name in module.exports or ():
                if not _public(name) or name not in module.members:
                    continue
                target = module.members[name]
                if target.is_alias:
                    target = target.final_target  # type: ignore[union-attr]
                path = f"{module_path}.{name}"
                anchors.add(path)
                public_path.setdefault(target.path, path)
                for member_name, member in target.members.items():
                    if _public(member_name) and not member.is_alias:
                        anchors.add(f"{path}.{member_name}")
        self._rewrite(pkg, anchors, public_path)

    def _rewrite(self, obj: griffe.Object, anchors: set[str], public_path: dict[str, str]) -> None:
        if obj.docstring is not None:
            context = obj if obj.is_class else obj.parent
            scope = public_path.get(context.path) if context is not None else None
            obj.docstring.value = convert(obj.docstring.value, anchors, scope)
        for member in obj.members.values():
            if not member.is_alias:
                self._rewrite(member, anchors, public_path)  # type: ignore[arg-type]


def convert(text: str, anchors: set[str], scope: str | None) -> str:
    """``text`` with roles as cross-references or code, ``::`` as ``:``."""

    def role(match: re.Match[str]) -> str:
        short, name = match[1] == "~", match[2].strip()
        shown = name.rsplit(".", 1)[-1] if short else name
        candidates = [f"{scope}.{name}"] if scope else []
        candidates += [f"{module}.{name}" for module in PUBLIC_MODULES] + [name]
        for identifier in candidates:
            if identifier in anchors:
                return f"[`{shown}`][{identifier}]"
        return f"`{shown}`"

    text = ROLE.sub(role, text)
    text = LITERAL_BLOCK.sub(r"\1:", text)
    return BARE_LITERAL_BLOCK.sub("", text)
