"""Objects: the protocol user types follow, validation, and the JSON codec.

An object is any class with a ``kind`` class attribute and an ``id()``
method. Dataclasses (and msgspec Structs, attrs-free plain types) are encoded
to JSON with msgspec and decoded back to the controller's type.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Protocol, runtime_checkable

import msgspec

from ._config import NAME_MAX, NAME_RE, PRIORITY_MAX, PRIORITY_MIN, ObjectSettings, short
from ._errors import ConfigError, ObjectError
from ._types import InformOpts

ID_MAX = 254
#: Deepest nesting of lists and objects an object (or metadata) may have.
MAX_DEPTH = 200
TAG_RE = re.compile(r"\A[\w][\w\-]+[\w]\Z")
TAG_MAX = 255
# A JSON-escaped NUL that is not itself an escaped backslash followed by "u0000".
_ESCAPED_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


@runtime_checkable
class Object(Protocol):
    """What trio_delta needs of an object: a ``kind`` and an ``id()``.

    Optional methods are looked up by name: ``compare(other) -> int``,
    ``created_at() -> datetime | None``, ``inform_opts() -> InformOpts`` and
    the classmethod ``settings() -> ObjectSettings``.
    """

    kind: ClassVar[str]

    def id(self) -> str: ...


def check_kind(value: object, *, error: type[Exception] = ConfigError) -> str:
    if not _valid_name(value):
        raise error(
            f"invalid kind {short(value)}: use 1-{NAME_MAX} of [a-z0-9], "
            "with single '_' or '-' between"
        )
    # A str: _valid_name checked, which the type checker cannot see.
    return value  # pyright: ignore[reportReturnType]


# Kinds and namespaces already checked: objects of one kind arrive by the
# hundred thousand, and the regular expression was a visible share of
# preparing each. Bounded, so arbitrary distinct names cannot grow it.
_VALID_NAMES: set[str] = set()
_VALID_NAMES_MAX = 10_000


def _valid_name(value: object) -> bool:
    """Whether ``value`` is a valid kind or namespace (remembered when so)."""
    if type(value) is str and value in _VALID_NAMES:
        return True
    if not isinstance(value, str) or len(value) > NAME_MAX or not NAME_RE.match(value):
        return False
    if len(_VALID_NAMES) < _VALID_NAMES_MAX and type(value) is str:
        _VALID_NAMES.add(value)
    return True


_NO_SETTINGS = ObjectSettings()
# Per class, as the name of the hook says: bulk informs read a kind's
# settings once per object. Bounded like the names above.
_SETTINGS: dict[type[Any], ObjectSettings] = {}


def object_settings(cls: type[Any]) -> ObjectSettings:
    cached = _SETTINGS.get(cls)
    if cached is not None:
        return cached
    hook = getattr(cls, "settings", None)
    if hook is None:
        settings = _NO_SETTINGS
    else:
        settings = hook()
        if not isinstance(settings, ObjectSettings):
            raise ConfigError(
                f"{cls.__name__}.settings() must return ObjectSettings, got {settings!r}"
            )
    if len(_SETTINGS) < _VALID_NAMES_MAX:
        _SETTINGS[cls] = settings
    return settings


def _has_non_finite(value: Any) -> bool:
    # Iterative: an object may nest as deep as msgspec allows, deeper than
    # Python's recursion limit leaves room for here.
    pending: list[Any] = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, float):
            if not math.isfinite(item):
                return True
        elif isinstance(item, Mapping):
            pending.extend(item.values())  # pyright: ignore[reportUnknownArgumentType]
        elif isinstance(item, list | tuple):
            pending.extend(item)  # pyright: ignore[reportUnknownArgumentType]
    return False


_encoder = msgspec.json.Encoder(order="sorted")


def encode_json(value: Any, *, what: str | tuple[str, str, str]) -> bytes:
    """Canonical JSON (sorted keys) of ``value``, or :class:`ObjectError`.

    Rejects what Postgres' jsonb cannot hold faithfully: NUL characters,
    lone surrogates and non-finite floats (which JSON encoders turn into null).
    ``what`` names the value in errors: a text, or (kind, object id, suffix),
    made into one only for an error (formatting it for every object was a
    tenth of preparing one).
    """
    try:
        encoded = _encoder.encode(value)
    except (TypeError, ValueError, OverflowError, RecursionError, msgspec.EncodeError) as exc:
        raise ObjectError(f"{_name(what)} cannot be encoded as JSON: {exc}") from None
    # The plain substring test is cheap; the exact regex runs only on a hit.
    if b"\\u0000" in encoded and _ESCAPED_NUL.search(encoded):
        raise ObjectError(f"{_name(what)} contains a NUL character, which Postgres cannot store")
    # Only objects with many brackets can nest deeply; only those pay for a
    # depth walk. The limit keeps every stored object decodable wherever it
    # is read (msgspec's own limit follows the caller's stack depth).
    deep = encoded.count(b"[") + encoded.count(b"{") > MAX_DEPTH
    # A non-finite float encodes as null; only then pay for that walk.
    if deep or b"null" in encoded:
        try:
            plain = msgspec.to_builtins(value)
        except RecursionError:
            raise ObjectError(f"{_name(what)} is nested deeper than {MAX_DEPTH} levels") from None
        if deep and _depth(plain) > MAX_DEPTH:
            raise ObjectError(f"{_name(what)} is nested deeper than {MAX_DEPTH} levels")
        if b"null" in encoded and _has_non_finite(plain):
            raise ObjectError(f"{_name(what)} contains NaN or infinity, which JSON cannot hold")
    return encoded


def _name(what: str | tuple[str, str, str]) -> str:
    if isinstance(what, str):
        return what
    kind, object_id, suffix = what
    return f"{kind} {object_id!r}{suffix}"


def _depth(value: Any) -> int:
    """How deeply lists and mappings nest in ``value`` (iteratively)."""
    deepest = 0
    pending: list[tuple[Any, int]] = [(value, 0)]
    while pending:
        item, level = pending.pop()
        if isinstance(item, Mapping):
            deepest = max(deepest, level + 1)
            pending.extend((v, level + 1) for v in item.values())  # pyright: ignore[reportUnknownVariableType,reportUnknownArgumentType]
        elif isinstance(item, list | tuple):
            deepest = max(deepest, level + 1)
            pending.extend((v, level + 1) for v in item)  # pyright: ignore[reportUnknownVariableType,reportUnknownArgumentType]
    return deepest


def object_hash(encoded: bytes) -> bytes:
    """Change-detection hash of an object's canonical JSON."""
    return hashlib.blake2b(encoded, digest_size=16).digest()


@dataclass(slots=True)
class PreparedObject:
    """An object checked and encoded, ready to be upserted.

    Read-only by convention; not frozen, and built positionally, because
    that costs a third of a frozen dataclass built by keyword, per object.
    """

    kind: str
    object_id: str
    namespace: str
    encoded: bytes
    hash: bytes
    metadata: bytes
    tags: tuple[str, ...]
    max_attempts: int
    created_at: datetime | None
    obj: Any
    priority: int = 0
    """For a new resource; a changed one keeps its own unless ``priority_set``."""
    priority_set: bool = False
    run_at: datetime | None = None

    def with_metadata(self, metadata: bytes) -> PreparedObject:
        """A copy with other encoded ``metadata`` (every field, positionally:
        several times faster than ``copy.copy`` or ``dataclasses.replace``)."""
        return PreparedObject(
            self.kind,
            self.object_id,
            self.namespace,
            self.encoded,
            self.hash,
            metadata,
            self.tags,
            self.max_attempts,
            self.created_at,
            self.obj,
            self.priority,
            self.priority_set,
            self.run_at,
        )


def _check_tags(tags: object) -> tuple[str, ...]:
    if isinstance(tags, str) or not isinstance(tags, Sequence):
        raise ObjectError(f"tags must be a sequence of strings, got {tags!r}")
    out: list[str] = []
    for tag in tags:  # pyright: ignore[reportUnknownVariableType]
        if not isinstance(tag, str) or len(tag) > TAG_MAX or not TAG_RE.match(tag):
            raise ObjectError(
                f"invalid tag {short(tag)}: 3-{TAG_MAX} word characters or '-', "  # pyright: ignore[reportUnknownArgumentType]
                "starting and ending with a word character"
            )
        out.append(tag)
    return tuple(out)


_NO_OPTS = InformOpts()


def merge_inform_opts(obj: Any, opts: InformOpts | None) -> InformOpts:
    """The object's ``inform_opts()`` overridden field by field by ``opts``."""
    hook = getattr(obj, "inform_opts", None)
    base = hook() if hook is not None else _NO_OPTS
    if not isinstance(base, InformOpts):
        raise ObjectError(f"{type(obj).__name__}.inform_opts() must return InformOpts")
    if opts is None:
        return base
    if not isinstance(opts, InformOpts):
        raise ObjectError(f"opts must be InformOpts or None, got {opts!r}")
    return InformOpts(
        namespace=opts.namespace if opts.namespace is not None else base.namespace,
        metadata=opts.metadata if opts.metadata is not None else base.metadata,
        max_attempts=opts.max_attempts if opts.max_attempts is not None else base.max_attempts,
        tags=opts.tags if opts.tags is not None else base.tags,
        priority=opts.priority if opts.priority is not None else base.priority,
        run_at=opts.run_at if opts.run_at is not None else base.run_at,
    )


def prepare_object(
    obj: Any, opts: InformOpts | None, *, default_max_attempts: int
) -> PreparedObject:
    """Validate and encode ``obj`` for an upsert, or raise :class:`ObjectError`."""
    obj_type: type[Any] = obj.__class__
    kind = check_kind(getattr(obj_type, "kind", None), error=ObjectError)
    id_method = getattr(obj, "id", None)
    if not callable(id_method):
        raise ObjectError(f"{type(obj).__name__} has no id() method")
    object_id = id_method()
    if not isinstance(object_id, str):
        raise ObjectError(f"{kind}: id() must return str, got {type(object_id).__name__}")
    if not 0 < len(object_id) <= ID_MAX:
        raise ObjectError(f"{kind}: id must be 1-{ID_MAX} characters, got {len(object_id)}")
    if "\x00" in object_id:
        raise ObjectError(f"{kind}: id contains a NUL character")
    try:
        object_id.encode()
    except UnicodeEncodeError:
        raise ObjectError(f"{kind}: id is not valid Unicode (lone surrogate)") from None

    merged = merge_inform_opts(obj, opts)
    namespace = merged.namespace if merged.namespace is not None else "default"
    if not _valid_name(namespace):
        raise ObjectError(f"{kind} {object_id!r}: invalid namespace {short(namespace)}")
    settings = object_settings(obj_type)
    max_attempts = merged.max_attempts
    if max_attempts is None:
        max_attempts = (
            settings.max_attempts if settings.max_attempts is not None else default_max_attempts
        )
    if (
        isinstance(max_attempts, bool)
        or not isinstance(max_attempts, int)
        or not (1 <= max_attempts <= 32767)
    ):
        raise ObjectError(
            f"{kind} {object_id!r}: max_attempts must be 1-32767, got {max_attempts!r}"
        )
    if merged.metadata is not None and not isinstance(merged.metadata, Mapping):
        raise ObjectError(
            f"{kind} {object_id!r}: metadata must be a mapping, "
            f"got {type(merged.metadata).__name__}"
        )
    metadata = b"{}"
    if merged.metadata:
        metadata_value = dict(merged.metadata)
        if not all(isinstance(k, str) for k in metadata_value):
            raise ObjectError(f"{kind} {object_id!r}: metadata keys must be strings")
        metadata = encode_json(metadata_value, what=(kind, object_id, " metadata"))
    tags = () if merged.tags is None else _check_tags(merged.tags)
    encoded = encode_json(obj, what=(kind, object_id, ""))
    if encoded[:1] != b"{":
        raise ObjectError(f"{kind} {object_id!r}: an object must encode to a JSON object")

    created_at: datetime | None = None
    created_hook = getattr(obj, "created_at", None)
    if callable(created_hook):
        value: object = created_hook()
        if value is not None and not isinstance(value, datetime):
            raise ObjectError(f"{kind} {object_id!r}: created_at() must return datetime or None")
        created_at = value
    priority = merged.priority if merged.priority is not None else settings.priority
    if merged.priority is not None and (
        isinstance(priority, bool)
        or not isinstance(priority, int)
        or not PRIORITY_MIN <= priority <= PRIORITY_MAX
    ):
        raise ObjectError(
            f"{kind} {object_id!r}: priority must be an integer from {PRIORITY_MIN} "
            f"to {PRIORITY_MAX}, got {priority!r}"
        )
    run_at = merged.run_at
    if run_at is not None and (
        not isinstance(run_at, datetime) or run_at.tzinfo is None or run_at.utcoffset() is None
    ):
        raise ObjectError(f"{kind} {object_id!r}: run_at must be a timezone-aware datetime")
    return PreparedObject(
        kind,
        object_id,
        namespace,
        encoded,
        object_hash(encoded),
        metadata,
        tags,
        max_attempts,
        created_at,
        obj,
        priority,
        merged.priority is not None,
        run_at,
    )


def decode_object(encoded: bytes, object_type: type[Any] | None) -> Any:
    """Decode stored JSON to ``object_type`` (plain JSON value when None)."""
    if object_type is None:
        return msgspec.json.decode(encoded)
    return msgspec.json.decode(encoded, type=object_type)
