"""The direct text writer produces exactly what prometheus_client's encoder produces."""

from __future__ import annotations

import math
from collections.abc import Callable

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


def test_go_float_writes_values_as_prometheus_client_does() -> None:
    """The oracle is prometheus_client's own formatter, over values around every switch."""
    import random

    from prometheus_client.utils import floatToGoString

    from exporter.exposition import go_float

    rng = random.Random(12)
    values = [
        *VALUES,
        999999.5,
        1e6,
        1234567.0,
        9999999.0,
        1e7,
        123456789012.5,
        5e-324,
        -1e300,
        1.7976931348623157e308,
        0.1,
        -0.0,
    ]
    values += [rng.uniform(-1e12, 1e12) for _ in range(2000)]
    values += [10 ** rng.uniform(-30, 30) for _ in range(2000)]
    values += [float(rng.randrange(0, 10**15)) for _ in range(2000)]
    # prometheus_client.utils has no annotations: give the reference its known signature.
    reference: Callable[[float], str] = floatToGoString
    assert [go_float(v) for v in values] == [reference(v) for v in values]


def test_own_process_metrics_agree_with_prometheus_clients_collector() -> None:
    from prometheus_client import ProcessCollector

    from exporter.process import process_samples

    ours = {s.family.name: (s.family.type, s.family.help, s.value) for s in process_samples()}
    theirs = {
        sample.name: (family.type, family.documentation, sample.value)
        for family in ProcessCollector(registry=None).collect()
        for sample in family.samples
    }
    assert ours.keys() == theirs.keys()
    for name, (kind, help_text, value) in ours.items():
        assert (kind, help_text) == theirs[name][:2], name
        tolerance = {
            "process_resident_memory_bytes": 4 * 2**20,
            "process_virtual_memory_bytes": 16 * 2**20,
            "process_cpu_seconds_total": 0.5,
            "process_open_fds": 2,
        }.get(name, 0.01)
        assert abs(value - theirs[name][2]) <= tolerance, (name, value, theirs[name][2])
