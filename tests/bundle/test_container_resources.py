"""The container CPU and memory alerts of rta-cctv and face-recognition in the cases
their shipped tests (a container with a CPU quota and a memory limit) do not show: a
container without a quota is judged against the machine's cores, one without a memory
limit (cAdvisor reports 0) against the machine's memory, and page cache never counts.
Run by promtool over the freshly generated rules, inputs just either side of the
threshold."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from exporter.bundle.profile import Alert, Profile
from exporter.bundle.promtests import expected_annotations
from exporter.bundle.rules import alert_labels
from tests.support import promtool_test, require_binary

GIB = 1024**3


def _series(system: str, name: str, metric: str, values: str, **extra: str) -> dict[str, str]:
    labels = {"job": "cadvisor", "instance": "host:8080", "system": system, **extra}
    if name:
        labels["name"] = name
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return {"series": f"{metric}{{{inner}}}", "values": values}


CORES, MEMORY = 4, 16 * GIB  # the machine; its containers have no quota and no limit


def _cpu_inputs(system: str, prefix: str, threshold: float) -> list[dict[str, str]]:
    series = [_series(system, "", "machine_cpu_cores", f"{CORES}x40")]
    for name, share in (("cpu-quiet", threshold * 0.995), ("cpu-fire", threshold * 1.005)):
        # CPU seconds used per one-minute step: that share of all the machine's cores.
        usage = f"0+{share * CORES * 60}x40"
        series += [
            _series(system, prefix + name, "container_cpu_usage_seconds_total", usage, cpu="total"),
            _series(system, prefix + name, "container_spec_cpu_period", "100000x40"),
        ]
    return series


def _memory_inputs(system: str, prefix: str, threshold: float) -> list[dict[str, str]]:
    series = [_series(system, "", "machine_memory_bytes", f"{MEMORY}x40")]
    for name, working_set, usage in (
        ("mem-quiet", threshold * 0.995, threshold * 0.995),
        ("mem-fire", threshold * 1.005, threshold * 1.005),
        # Nearly all of the machine in use, but the working set is half: page cache.
        ("mem-cache", 0.5, 0.99),
    ):
        for metric, share in (
            ("container_memory_working_set_bytes", working_set),
            ("container_memory_usage_bytes", usage),
            ("container_spec_memory_limit_bytes", 0.0),  # cAdvisor's "no limit"
        ):
            series.append(_series(system, prefix + name, metric, f"{int(share * MEMORY)}x40"))
    return series


@pytest.mark.parametrize(("slug", "prefix"), [("rta-cctv", "cctv-"), ("face-recognition", "")])
def test_containers_without_limits_are_judged_against_the_machine(
    profiles: list[Profile], bundle: Path, tmp_path: Path, slug: str, prefix: str
) -> None:
    promtool = require_binary("promtool", "prometheus")
    profile = next(p for p in profiles if p.slug == slug)
    cpu, memory = profile.alert("ContainerCpuHigh"), profile.alert("ContainerMemoryHigh")
    series = _cpu_inputs(profile.system, prefix, cpu.threshold)
    series += _memory_inputs(profile.system, prefix, memory.threshold)
    at = int(5 * 60 + cpu.for_) // 60 + 1  # the rate window full, then for
    checks: list[dict[str, Any]] = [
        {
            "eval_time": f"{at}m",
            "alertname": alert.name,
            "exp_alerts": [_page(profile, alert, name)],
        }
        for alert, name in ((cpu, prefix + "cpu-fire"), (memory, prefix + "mem-fire"))
    ]
    result = promtool_test(
        promtool,
        tmp_path / "containers.yml",
        [str(bundle / "rules" / f"{slug}.rules.yml")],
        f"{int(profile.evaluation_interval)}s",
        series,
        checks,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _page(profile: Profile, alert: Alert, name: str) -> dict[str, Any]:
    """The one alert expected: the firing container's, with its labels and annotations."""
    labels = {"instance": "host:8080", "name": name, "system": profile.system}
    labels.update(alert_labels(profile, alert))
    return {"exp_labels": labels, "exp_annotations": expected_annotations(profile, alert, labels)}
