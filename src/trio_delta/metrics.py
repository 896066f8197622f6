"""Prometheus metrics for a client: ``pip install 'trio-delta[metrics]'``.

::

    from trio_delta.metrics import PrometheusMetrics

    metrics = PrometheusMetrics()          # prometheus_client's default registry
    config = delta.Config(observer=metrics)

Serve them as you serve your application's (``prometheus_client``'s own
exporters), or with ``trio-delta run --http HOST:PORT`` (``/metrics``).
The metrics and their labels are listed in docs/operating.md. Per-process
counters are this client's; ``trio_delta_resources`` and
``trio_delta_oldest_due_seconds`` are the whole cluster's, reported by the
leader alone.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import REGISTRY

from ._observer import CensusRow, Observer, RunningClient

__all__ = ["PrometheusMetrics"]

#: Work durations from a millisecond to ten minutes.
WORK_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 60.0, 300.0, 600.0)
#: Statement round trips, from 0.2 ms to 5 s.
WRITE_BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0)
#: Rows per claim, up to ``Config.batch_size``'s usual sizes.
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000)


#: The ``le`` labels of the work duration buckets, as Prometheus writes them.
_WORK_BUCKET_LABELS = (*(repr(float(b)) for b in WORK_BUCKETS), "+Inf")


class _WorkTally:
    """The per-work metrics, kept in plain dicts and read out when scraped.

    Works start and end thousands of times a second. prometheus_client's
    labelled children take a lock for every increment, and a histogram
    takes two and walks its buckets in Python: ~2.5 us a work, a tenth of
    what a no-op resource costs in all. Here a work costs two dict updates
    and a bisect (:meth:`PrometheusMetrics.work_ended`); the registry reads
    the totals when it is scraped (from any thread: it reads copies).
    """

    def __init__(self) -> None:
        self.started: dict[tuple[str, str], int] = {}
        self.ended: dict[tuple[str, str, str], int] = {}
        # Per (kind, namespace): a count per bucket, then +Inf, then the sum.
        self.durations: dict[tuple[str, str], list[float]] = {}

    def describe(self) -> Iterator[Metric]:
        yield from self._families()

    def collect(self) -> Iterator[Metric]:
        families = self._families()
        works_started, works, duration = families
        for (kind, namespace), count in self.started.copy().items():
            works_started.add_metric([kind, namespace], count)
        for (kind, namespace, outcome), count in self.ended.copy().items():
            works.add_metric([kind, namespace, outcome], count)
        for (kind, namespace), tally in self.durations.copy().items():
            counts = list(tally)  # a copy, as one read
            buckets: list[tuple[str, float]] = []
            cumulative = 0.0
            for label, count in zip(_WORK_BUCKET_LABELS, counts[:-1], strict=True):
                cumulative += count
                buckets.append((label, cumulative))
            duration.add_metric([kind, namespace], buckets, counts[-1])
        yield from families

    @staticmethod
    def _families() -> tuple[CounterMetricFamily, CounterMetricFamily, HistogramMetricFamily]:
        return (
            CounterMetricFamily(
                "trio_delta_works_started", "Work calls begun.", labels=["kind", "namespace"]
            ),
            CounterMetricFamily(
                "trio_delta_works",
                "Work calls ended, by what became of the resource.",
                labels=["kind", "namespace", "outcome"],
            ),
            HistogramMetricFamily(
                "trio_delta_work_duration_seconds",
                "How long work calls ran.",
                labels=["kind", "namespace"],
            ),
        )


class PrometheusMetrics(Observer):
    """An :class:`~trio_delta.Observer` that keeps Prometheus metrics.

    ``registry``: where to register them (prometheus_client's default one
    when None). One instance per client; two clients in a process need two
    registries (the metric names would collide in one).
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = REGISTRY if registry is None else registry
        r = self.registry
        self.claimed_rows = Counter(
            "trio_delta_claimed_rows", "Rows claimed for work.", ["namespace"], registry=r
        )
        self.claim_batch = Histogram(
            "trio_delta_claim_batch_rows",
            "Rows per claim that found work.",
            ["namespace"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self._works = _WorkTally()
        r.register(self._works)
        self.outcome_write = Histogram(
            "trio_delta_outcome_write_seconds",
            "How long writing one batch of outcomes took.",
            buckets=WRITE_BUCKETS,
            registry=r,
        )
        self.outcomes = Counter("trio_delta_outcomes_written", "Outcomes written.", registry=r)
        self.informs = Counter(
            "trio_delta_informs",
            "Objects informed by the application (inform, inform_many, inform_tx), "
            "by what they did to their resource.",
            ["kind", "result"],
            registry=r,
        )
        self.informer_runs = Counter(
            "trio_delta_informer_runs", "Informer runs ended.", ["kind", "result"], registry=r
        )
        self.informer_objects = Counter(
            "trio_delta_informer_objects",
            "Objects written by informer runs.",
            ["kind"],
            registry=r,
        )
        self.informer_duration = Histogram(
            "trio_delta_informer_run_duration_seconds",
            "How long informer runs took.",
            ["kind"],
            buckets=WORK_BUCKETS,
            registry=r,
        )
        self.resources = Gauge(
            "trio_delta_resources",
            "Resources by kind, namespace and state, in the whole cluster (counted by the leader).",
            ["kind", "namespace", "state"],
            registry=r,
        )
        self.oldest_due = Gauge(
            "trio_delta_oldest_due_seconds",
            "How long the oldest due scheduled resource has waited (the leader's count).",
            ["kind", "namespace"],
            registry=r,
        )
        self.is_leader = Gauge(
            "trio_delta_is_leader", "1 while this client is the leader.", registry=r
        )
        self.pool_in_use = Gauge(
            "trio_delta_pool_connections_in_use", "Pool connections in use.", registry=r
        )
        self.pool_size = Gauge(
            "trio_delta_pool_connections_max", "Most connections the pool opens.", registry=r
        )
        self._claims: dict[str, tuple[Counter, Histogram]] = {}

    def client_started(self, client: RunningClient) -> None:
        # Read when scraped: always current, no task to keep them so.
        self.is_leader.set_function(lambda: float(client.is_leader))
        self.pool_in_use.set_function(lambda: float(client.pool_in_use[0]))
        self.pool_size.set_function(lambda: float(client.pool_in_use[1]))

    # The per-work hooks run for every resource: the labelled children are
    # looked up once per label set (``labels()`` costs more than the
    # increment itself, and was most of the metrics' cost on a drain).

    def claimed(self, namespace: str, count: int) -> None:
        children = self._claims.get(namespace)
        if children is None:
            children = self._claims[namespace] = (
                self.claimed_rows.labels(namespace),
                self.claim_batch.labels(namespace),
            )
        children[0].inc(count)
        children[1].observe(count)

    def work_started(self, kind: str, namespace: str) -> None:
        started = self._works.started
        key = (kind, namespace)
        started[key] = started.get(key, 0) + 1

    def work_ended(self, kind: str, namespace: str, outcome: str, seconds: float) -> None:
        works = self._works
        key = (kind, namespace, outcome)
        works.ended[key] = works.ended.get(key, 0) + 1
        tally = works.durations.get(key[:2])
        if tally is None:
            tally = works.durations[key[:2]] = [0.0] * (len(WORK_BUCKETS) + 2)
        tally[bisect_left(WORK_BUCKETS, seconds)] += 1
        tally[-1] += seconds

    def outcomes_written(self, count: int, seconds: float) -> None:
        self.outcomes.inc(count)
        self.outcome_write.observe(seconds)

    def informed(self, kind: str, result: str, count: int) -> None:
        self.informs.labels(kind, result).inc(count)

    def informer_run(self, kind: str, ok: bool, seconds: float, objects: int) -> None:
        self.informer_runs.labels(kind, "ok" if ok else "failed").inc()
        self.informer_objects.labels(kind).inc(objects)
        self.informer_duration.labels(kind).observe(seconds)

    def census(self, rows: Sequence[CensusRow] | None) -> None:
        # Replaced whole: a state no longer present must not keep its count.
        self.resources.clear()
        self.oldest_due.clear()
        for row in rows or ():
            self.resources.labels(row.kind, row.namespace, row.state).set(row.count)
            if row.state == "scheduled":
                self.oldest_due.labels(row.kind, row.namespace).set(row.oldest_due_seconds)
