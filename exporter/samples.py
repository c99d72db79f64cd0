"""Metric families a check kind declares, and the sink a check writes its samples into."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from exporter.fields import format_duration

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

FamilyType = Literal["gauge", "counter"]


@dataclass(frozen=True)
class Family:
    """One metric family: its full name, type, help and labels besides ``check``."""

    name: str
    type: FamilyType
    help: str
    labels: tuple[str, ...] = ()
    # The value is the Unix time of something that already happened (newest data, last
    # save): one further ahead than the check's max_future_skew is refused, since
    # ``time() - value`` would go negative and its staleness alert could never fire.
    past_time: bool = False

    def __post_init__(self) -> None:
        if self.type == "counter" and not self.name.endswith("_total"):
            raise ValueError(f"counter {self.name} must end in _total")
        if self.type != "counter" and self.name.endswith("_total"):
            raise ValueError(f"only counters end in _total: {self.name}")


@dataclass(frozen=True, slots=True)
class Sample:
    """One value of a family with its full label set, as a check run wrote it."""

    family: Family
    labels: tuple[tuple[str, str], ...]  # check, then static labels, then the family's
    value: float


class Sink:
    """Collects the samples of one check run; every sample gets the ``check`` label."""

    def __init__(self, check: str, static_labels: tuple[tuple[str, str], ...] = ()) -> None:
        self._base = (("check", check), *static_labels)
        self.samples: list[Sample] = []

    def add(self, family: Family, value: float, **labels: str) -> None:
        """Write one sample of ``family``; ``labels`` must be exactly the family's own
        labels (``out.add(QUERY_SUCCESS, 1.0, query="orders")``), else ValueError."""
        if labels.keys() != set(family.labels):
            raise ValueError(
                f"{family.name} takes labels {sorted(family.labels)}, got {sorted(labels)}"
            )
        ordered = tuple((name, str(labels[name])) for name in family.labels)
        self.samples.append(Sample(family, self._base + ordered, float(value)))

    def add_ordered(
        self, family: Family, value: float, labels: tuple[tuple[str, str], ...]
    ) -> None:
        """Like :meth:`add` with ``labels`` already as ``(name, value)`` pairs in
        ``family.labels`` order, for kinds writing tens of thousands of samples per scrape
        (bullmq): the pairs are built once per queue, not checked on every call."""
        self.samples.append(Sample(family, self._base + labels, float(value)))

    @property
    def base(self) -> tuple[tuple[str, str], ...]:
        """The labels every sample of this sink starts with: ``check``, then static labels."""
        return self._base

    def extend(self, samples: Sequence[Sample]) -> None:
        """Add samples built in an earlier run of the same check, for a kind that keeps the
        samples of targets whose values did not change (bullmq: most of 1,000 queues stay
        the same between scrapes). Their labels must start with :attr:`base`; the caller
        keeps them only while ``base`` is the same."""
        self.samples.extend(samples)


def refuse_future_times(
    samples: list[Sample], skew: float
) -> tuple[tuple[Sample, ...], str | None]:
    """The samples without past times (``Family.past_time``) more than ``skew`` seconds in
    the future, and a reason naming them (None when there are none).

    A target whose clock runs ahead (or whose data holds 9999-12-31) would otherwise look
    fresh forever: its staleness alert compares ``time() - value`` with a threshold.
    """
    limit = time.time() + skew
    refused = [s for s in samples if s.family.past_time and s.value > limit]
    if not refused:
        return tuple(samples), None
    first = refused[0]
    labels = ",".join(f'{k}="{v}"' for k, v in first.labels if k != "check")
    more = f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""
    reason = (
        f"{first.family.name}{{{labels}}} is {_future_text(first.value)}, more than "
        f"max_future_skew {format_duration(skew)} ahead of this host's clock{more}: "
        "the target's clock or data is wrong; not exported"
    )
    dropped = {id(s) for s in refused}
    return tuple(s for s in samples if id(s) not in dropped), reason


def _future_text(value: float) -> str:
    try:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(value))
    except (OverflowError, OSError, ValueError):
        return f"{value:.6g} (Unix seconds)"


def to_metrics(samples: Iterable[Sample], extra: Sequence[Metric] = ()) -> list[Metric]:
    """Group samples into prometheus_client metric families, in first-seen order."""
    from prometheus_client.metrics_core import Metric  # OpenMetrics only (exposition.py)

    by_name: dict[str, Metric] = {}
    for sample in samples:
        family = sample.family
        metric = by_name.get(family.name)
        if metric is None:
            base = family.name.removesuffix("_total") if family.type == "counter" else family.name
            metric = Metric(base, family.help, family.type)
            by_name[family.name] = metric
        value = sample.value
        if math.isnan(value) and family.type == "counter":
            continue
        metric.add_sample(family.name, dict(sample.labels), value)
    return [*extra, *by_name.values()]
