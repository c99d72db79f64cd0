"""Metric families a check kind declares, and the sink a check writes its samples into."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

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
    family: Family
    labels: tuple[tuple[str, str], ...]  # check, then static labels, then the family's
    value: float


class Sink:
    """Collects the samples of one check run; every sample gets the ``check`` label."""

    def __init__(self, check: str, static_labels: tuple[tuple[str, str], ...] = ()) -> None:
        self._base = (("check", check), *static_labels)
        self.samples: list[Sample] = []

    def add(self, family: Family, value: float, **labels: str) -> None:
        if labels.keys() != set(family.labels):
            raise ValueError(
                f"{family.name} takes labels {sorted(family.labels)}, got {sorted(labels)}"
            )
        ordered = tuple((name, str(labels[name])) for name in family.labels)
        self.samples.append(Sample(family, self._base + ordered, float(value)))


def to_metrics(samples: Iterable[Sample], extra: Sequence[Metric] = ()) -> list[Metric]:
    """Group samples into prometheus_client metric families, in first-seen order."""
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
