"""Worker slot accounting shared by the fetcher and the worker pools.

The fetcher claims only what can start now, or soon: per
namespace, ``max_workers`` plus its ``prefetch`` minus what is in flight; per kind with a
``parallelism``, that cap minus the kind's work in flight in this client.
A claim still in flight *reserves* what it may return, so a second claim
running beside it asks only for what is left.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from .._controllers import Controllers
from .._store.params import ClaimRequest
from .._types import Resource


class Slots:
    def __init__(self, max_workers: Mapping[str, int], controllers: Controllers) -> None:
        self._max_workers = dict(max_workers)
        self._caps: dict[str, int | None] = {
            reg.kind: reg.settings.parallelism for reg in controllers
        }
        self.capped = any(cap is not None for cap in self._caps.values())
        """Whether any kind has a parallelism cap."""
        self._by_namespace: Counter[str] = Counter()
        self._by_kind: Counter[str] = Counter()

    def capacity(self, namespace: str) -> int:
        """Rows ``namespace`` may hold at once: its workers and its prefetch."""
        return self._max_workers[namespace]

    def namespace_free(self, namespace: str) -> int:
        return self._max_workers[namespace] - self._by_namespace[namespace]

    def kind_caps(self) -> dict[str, int | None]:
        """Each kind's remaining parallelism (None: uncapped)."""
        return {
            kind: None if cap is None else max(0, cap - self._by_kind[kind])
            for kind, cap in self._caps.items()
        }

    def in_flight(self) -> int:
        return sum(self._by_namespace.values())

    def take(self, namespace: str, kind: str) -> None:
        self._by_namespace[namespace] += 1
        self._by_kind[kind] += 1

    def take_all(self, resources: Iterable[Resource[Any]]) -> None:
        """:meth:`take` for each of ``resources`` (a claim's rows)."""
        by_namespace, by_kind = self._by_namespace, self._by_kind
        for resource in resources:
            by_namespace[resource.namespace] += 1
            by_kind[resource.kind] += 1

    def release(self, namespace: str, kind: str) -> None:
        self._by_namespace[namespace] -= 1
        self._by_kind[kind] -= 1

    def reserve(self, request: ClaimRequest) -> None:
        """Hold what ``request`` may return until :meth:`unreserve`."""
        self._hold(request, 1)

    def unreserve(self, request: ClaimRequest) -> None:
        self._hold(request, -1)

    def _hold(self, request: ClaimRequest, sign: int) -> None:
        self._by_namespace[request.namespace] += sign * request.limit
        for kind, cap in request.kinds.items():
            if cap is not None:
                self._by_kind[kind] += sign * min(cap, request.limit)
