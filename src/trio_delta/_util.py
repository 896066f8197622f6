"""Small helpers for the package's own classes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar, cast

import sniffio
import trio

from ._errors import TrioRequiredError

T = TypeVar("T")


class NoPublicConstructor(type):
    """A metaclass for handles that only their factory may build: calling
    the class raises :class:`TypeError`; the factory uses :func:`construct`."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(
            f"{cls.__module__}.{cls.__qualname__} has no public constructor; "
            "get one from the function that opens it"
        )


def construct(cls: type[T], *args: Any, **kwargs: Any) -> T:
    """An instance of ``cls``, a class of :class:`NoPublicConstructor`."""
    instance: T = type.__call__(cls, *args, **kwargs)
    return instance


def fixup_module_metadata(module_name: str, namespace: Mapping[str, Any]) -> None:
    """Make the public names of ``namespace`` report ``module_name`` as their
    module (``trio_delta.Client``, not ``trio_delta._client.Client``), so
    reprs, docs and pickles show where users import them from."""
    seen: set[int] = set()

    def fix(name: str, obj: Any) -> None:
        if id(obj) in seen:
            return
        seen.add(id(obj))
        mod: Any = getattr(obj, "__module__", None)
        if not isinstance(mod, str) or not mod.startswith("trio_delta."):
            return
        if not any(part.startswith("_") for part in mod.split(".")):
            return  # defined in a public module: its name is already right
        obj.__module__ = module_name
        if isinstance(obj, type):
            for attr_name, attr in obj.__dict__.items():
                if attr_name.startswith("_") or not callable(attr):
                    continue
                qual: Any = getattr(attr, "__qualname__", None)
                if isinstance(qual, str) and qual.startswith(obj.__qualname__ + "."):
                    fix(attr_name, attr)

    for name, obj in namespace.items():
        if not name.startswith("_"):
            fix(name, obj)


def leaf_exceptions(exc: BaseException) -> list[BaseException]:
    """The exceptions in ``exc`` that are not groups, depth first; ``[exc]``
    when it is not a group."""
    leaves: list[BaseException] = []
    pending: list[BaseException] = [exc]
    while pending:
        current = pending.pop()
        if isinstance(current, BaseExceptionGroup):
            inner = cast("Sequence[BaseException]", current.exceptions)  # pyright: ignore[reportUnknownMemberType]
            pending.extend(reversed(inner))
        else:
            leaves.append(current)
    return leaves


def single_exception(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """What one task would have raised in place of ``group``, the errors of
    tasks that ran as one: anything but Cancelled first (Ctrl-C, an error),
    else a Cancelled, which the cancelled scope then takes as its own."""
    leaves = leaf_exceptions(group)
    return next((e for e in leaves if not isinstance(e, trio.Cancelled)), leaves[0])


def require_trio(api: str) -> None:
    """Raise :class:`TrioRequiredError` unless called from Trio.

    Called first thing by the entry points that run on Trio: under asyncio
    their first Trio call would fail with ``RuntimeError: Task got bad
    yield``, which says nothing of what to do instead.
    """
    try:
        library: str | None = sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        library = None
    if library != "trio":
        where = f"from {library}" if library else "outside any async library"
        raise TrioRequiredError(
            f"{api} runs on Trio, but was called {where}. From asyncio or synchronous "
            "code, inform with trio_delta.producer (inform_async(), inform()) and run "
            "the workers under Trio (trio.run, or `trio-delta run`)"
        )
