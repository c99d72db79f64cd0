"""The ``/probe`` examples of docs/deployment.md are real: the exporter config loads, every
Prometheus config passes promtool, the Probe manifest is the committed one, and the
sharding relabelling is the one the two-Prometheus test runs."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.config import load_data
from exporter.probing import resolve
from tests.e2e.test_probe_sharding import shard_config
from tests.support import require_binary

REPO = Path(__file__).resolve().parents[2]
DEPLOYMENT = REPO / "docs" / "deployment.md"


def section_blocks() -> list[Any]:
    text = DEPLOYMENT.read_text(encoding="utf-8")
    start = text.index("## Multi-target probing")
    section = text[start : text.index("\n## ", start + 1)]
    return [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", section, re.S)]


def blocks_with(key: str) -> list[dict[str, Any]]:
    return [b for b in section_blocks() if isinstance(b, dict) and key in b]


def test_the_module_example_loads_and_refuses_what_it_should() -> None:
    (example,) = blocks_with("modules")
    config = load_data(example, "docs", {"REDIS_PASSWORD": "s3cret-pw"})
    assert resolve(config, "tcp_connect", "10.1.0.10:5432").options.port == 5432
    assert resolve(config, "redis_health", "redis://redis-main:6379/0").kind == "redis"
    with pytest.raises(Exception, match="not allowed"):
        resolve(config, "tcp_connect", "169.254.169.254:80")


@pytest.mark.parametrize("index", range(3))
def test_every_prometheus_example_passes_promtool(tmp_path: Path, index: int) -> None:
    promtool = require_binary("promtool", "prometheus")
    examples = blocks_with("scrape_configs")
    assert len(examples) == 3
    example = examples[index]
    for job in example["scrape_configs"]:
        # Debian builds Prometheus without Kubernetes discovery (promtool rejects the key);
        # everything else, the relabelling included, is checked as written.
        if job.pop("kubernetes_sd_configs", None) is not None:
            job["static_configs"] = [{"targets": ["svc.ns.svc:80"]}]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(example))
    done = subprocess.run(
        [promtool, "check", "config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_probe_manifest_is_the_committed_example() -> None:
    (manifest,) = [b for b in section_blocks() if isinstance(b, dict) and b.get("kind") == "Probe"]
    committed = yaml.safe_load((REPO / "deploy" / "kubernetes" / "probe-example.yaml").read_text())
    assert manifest == committed
    spec = committed["spec"]
    assert spec["prober"]["path"] == "/probe"
    # The module the manifest names, configured as its comment says, accepts its targets.
    comment = (REPO / "deploy" / "kubernetes" / "probe-example.yaml").read_text()
    after = comment.split("needs the module", 1)[1].split("\n", 1)[1]
    module_yaml = "\n".join(
        line.removeprefix("# ") for line in after.splitlines() if line.startswith("#   ")
    )
    config = load_data(yaml.safe_load(module_yaml), "probe-example.yaml")
    for target in spec["targets"]["staticConfig"]["static"]:
        assert resolve(config, spec["module"], target).kind == "tcp"


def test_the_sharding_example_is_what_the_two_prometheus_test_runs() -> None:
    sharded = [
        b
        for b in blocks_with("scrape_configs")
        if any(r.get("action") == "hashmod" for r in b["scrape_configs"][0]["relabel_configs"])
    ]
    (example,) = sharded
    documented = example["scrape_configs"][0]["relabel_configs"]
    tested = shard_config(0, "runbook-exporter:9711", Path("x"))["scrape_configs"][0]
    assert documented == tested["relabel_configs"]
