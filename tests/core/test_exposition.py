"""The direct text writer produces exactly what prometheus_client's encoder produces."""

from __future__ import annotations

import math

import pytest

from exporter.exposition import TextWriter, all_samples, build_metrics, encode
from exporter.runner import CheckResult
from exporter.samples import Family, Sample

GAUGE = Family(
    "odd_gauge", "gauge", 'Help with a \\ backslash,\na newline and "quotes".', ("queue", "state")
)
COUNTER = Family("odd_jobs_total", "counter", "A counter.", ("queue",))

VALUES = [0.0, 1.0, -1.5, 1e-9, 123456789.0, 1.5e21, 2**53 + 1.0, math.inf, -math.inf, math.nan]
LABEL_VALUES = ["plain", 'quo"te', "back\\slash", "new\nline", "ünïcödé", "", "a,b=c}"]


def result(
    name: str, samples: list[Sample], labels: tuple[tuple[str, str], ...], success: bool = True
) -> CheckResult:
    return CheckResult(
        name=name,
        kind="test",
        labels=labels,
        success=success,
        duration=0.25,
        finished_at=0,
        started=0,
        error=None,
        samples=tuple(samples),
    )


def sample(family: Family, check: str, value: float, **labels: str) -> Sample:
    ordered = tuple((k, labels[k]) for k in family.labels)
    return Sample(family, (("check", check), ("zone", "eu"), *ordered), value)


@pytest.mark.parametrize("label_value", LABEL_VALUES)
def test_text_writer_matches_prometheus_client(label_value: str) -> None:
    first = [sample(GAUGE, "a", v, queue=label_value, state=str(i)) for i, v in enumerate(VALUES)]
    second = [sample(COUNTER, "b", v, queue=label_value) for v in VALUES]
    second.append(sample(GAUGE, "b", 7, queue="q", state="s"))  # a family seen again later
    results = [result("a", first, (("zone", "eu"),)), result("b", second, (), success=False)]
    expected = encode(build_metrics(results), None)[0]
    writer = TextWriter()
    assert writer.write(all_samples(results)) == expected
    assert writer.write(all_samples(results)) == expected  # from the label cache
