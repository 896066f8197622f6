"""Controllers: an informer plus a worker for one kind of object."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, get_args, get_origin

import msgspec
import trio

from ._config import ObjectSettings
from ._errors import ConfigError
from ._logs import get_logger, resource_fields
from ._objects import check_kind, object_settings
from ._types import InformOptions, Resource, ResourceRow

log = get_logger("trio_delta.client")

T = TypeVar("T")
R = TypeVar("R", bound=ResourceRow[Any])


class Controller(Generic[T]):
    """Base class of controllers; the object type is the generic parameter.

    Subclass as ``class UserController(Controller[User])`` and implement
    :meth:`work`; override :meth:`inform` to pull objects from the outside
    system on a schedule.
    """

    async def inform(self, opts: InformOptions, send: trio.MemorySendChannel[T]) -> None:
        """Send the objects changed since ``opts.after`` into ``send``.

        ``send`` is bounded: ``await send.send(obj)`` blocks while the writer
        catches up, which keeps memory flat however many objects a run yields.
        Close it (``async with send:``) when done. The default informs nothing.
        """
        await send.aclose()

    async def work(self, resource: Resource[T]) -> None:
        """Make the world match ``resource.object``.

        Return to mark the resource synced; raise to fail the attempt (retried
        per the retry policy, degraded after ``max_attempts``); raise
        :class:`ResourceDelete` to delete it.
        """
        raise NotImplementedError(f"{type(self).__name__}.work is not implemented")


def controller_object_type(controller: Controller[Any]) -> type[Any]:
    """The ``T`` of ``Controller[T]`` in the controller's class hierarchy."""
    explicit = getattr(controller, "object_type", None)
    if isinstance(explicit, type):
        return explicit
    for klass in type(controller).__mro__:
        for base in getattr(klass, "__orig_bases__", ()):
            if get_origin(base) is Controller:
                args = get_args(base)
                if args and isinstance(args[0], type):
                    return args[0]
    raise ConfigError(
        f"{type(controller).__name__}: cannot tell the object type; subclass "
        "Controller[YourObject] or set an object_type attribute"
    )


@dataclass(frozen=True, slots=True)
class Registration:
    """A controller with what was derived from its object type."""

    kind: str
    controller: Controller[Any]
    object_type: type[Any]
    settings: ObjectSettings
    # Made once: msgspec.json.decode(type=...) finds its decoder again for
    # every object, twice the cost of decoding (every claimed row is decoded).
    _decoder: msgspec.json.Decoder[Any] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_decoder", msgspec.json.Decoder(self.object_type))

    def decode(self, row: ResourceRow[Any]) -> Any:
        """``row``'s object as this kind's type, kept in the row; raises when
        the stored JSON does not fit the type."""
        obj = self._decoder.decode(row.encoded_object)
        row._set_decoded(obj)  # pyright: ignore[reportPrivateUsage]
        return obj


class Controllers:
    """The set of controllers a client runs, at most one per kind.

    Build it with :func:`add_controller`.
    """

    def __init__(self) -> None:
        self._by_kind: dict[str, Registration] = {}

    def __len__(self) -> int:
        return len(self._by_kind)

    def __iter__(self) -> Iterator[Registration]:
        return iter(self._by_kind.values())

    def __contains__(self, kind: object) -> bool:
        return kind in self._by_kind

    def get(self, kind: str) -> Registration | None:
        return self._by_kind.get(kind)

    def kinds(self) -> tuple[str, ...]:
        return tuple(self._by_kind)

    def bind(self, row: R) -> R:
        """``row`` with its object decoded to its kind's type: the one place
        rows read back get their objects. A kind without a controller here,
        or a stored object that no longer fits the type, stays plain JSON."""
        reg = self._by_kind.get(row.kind)
        if reg is not None:
            try:
                reg.decode(row)
            except Exception as exc:
                log.warning(
                    "%s %r: stored object does not decode to %s (%s); returning plain JSON",
                    row.kind,
                    row.object_id,
                    reg.object_type.__name__,
                    exc,
                    extra=resource_fields(row),
                )
        return row

    def __repr__(self) -> str:
        return f"Controllers({', '.join(self._by_kind)})"

    def _add(self, controller: Controller[Any]) -> Registration:
        if not isinstance(controller, Controller):
            raise ConfigError(f"expected a Controller instance, got {controller!r}")
        object_type = controller_object_type(controller)
        kind = check_kind(getattr(object_type, "kind", None))
        if kind in self._by_kind:
            raise ConfigError(f"a controller for kind {kind!r} was already added")
        if not callable(getattr(object_type, "id", None)):
            raise ConfigError(f"{object_type.__name__} has no id() method")
        reg = Registration(
            kind=kind,
            controller=controller,
            object_type=object_type,
            settings=object_settings(object_type),
        )
        self._by_kind[kind] = reg
        return reg


def add_controller(controllers: Controllers, controller: Controller[Any]) -> None:
    """Register ``controller`` for its object type's kind.

    Raises :class:`ConfigError` for a duplicate or invalid kind, or when the
    object type cannot be determined.
    """
    controllers._add(controller)  # pyright: ignore[reportPrivateUsage]
