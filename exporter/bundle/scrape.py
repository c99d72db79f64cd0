"""Scrape configuration that sets the ``system`` target label the rules select.

The isolation convention (``exporter.bundle.profile.SYSTEM_LABEL``): every target of one
monitored system carries ``system="<system>"``, set by the scrape configuration, never
by the target itself. Two writers here:

- ``compose/prometheus.yml``: one scrape job per job name the profiles read; its targets
  are file_sd files ``targets/<job>/<system>.yml`` and the file name becomes the label
  (relabelling ``__meta_filepath``), so a target listed for a system cannot lack it.
- ``deploy/kubernetes/servicemonitor.yaml``: the exporter's ServiceMonitor copies the
  Service's ``app.kubernetes.io/part-of`` label into ``system``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from exporter.bundle.profile import SYSTEM_LABEL, Profile
from exporter.bundle.render import GENERATED, dump_yaml

EXPORTER_JOB = "runbook-exporter"
# Jobs of Prometheus' own stack: scraped once, outside any system.
STACK_JOBS = ("prometheus", "alertmanager")
_JOB_MATCHER = re.compile(r'\bjob\s*(=~|=)\s*"([^"]*)"')
PART_OF = "app.kubernetes.io/part-of"


def target_file(job: str, system: str) -> str:
    """Where compose/prometheus.yml reads the targets of ``job`` in ``system``."""
    return f"targets/{job}/{system}.yml"


def profile_jobs(profile: Profile) -> list[str]:
    """Every scrape job whose series a profile's rules read: this exporter, the
    exporters it lists, and the jobs its queries name (``up{job=~"a|b"}``)."""
    jobs = [EXPORTER_JOB]
    jobs += [e.job for e in profile.exporters]
    for alert in profile.alerts:
        for match in _JOB_MATCHER.finditer(alert.query):
            jobs += match[2].split("|") if match[1] == "=~" else [match[2]]
    return [j for j in dict.fromkeys(jobs) if j not in STACK_JOBS]


def scrape_jobs(profiles: Sequence[Profile]) -> list[str]:
    """The union of every profile's jobs, the exporter first, then sorted."""
    jobs = {job for p in profiles for job in profile_jobs(p)} - {EXPORTER_JOB}
    return [EXPORTER_JOB, *sorted(jobs)]


def _system_job(job: str) -> dict[str, Any]:
    return {
        "job_name": job,
        "file_sd_configs": [{"files": [f"targets/{job}/*.yml"]}],
        "relabel_configs": [
            {
                # targets/<job>/<system>.yml: the file a target is listed in names its system.
                "source_labels": ["__meta_filepath"],
                "regex": r".*/([^/]+)\.yml",
                "target_label": SYSTEM_LABEL,
            }
        ],
    }


HEADER = """\
One Prometheus configuration for the compose stack (compose/docker-compose.yml) and the
end-to-end fire drills (tests/e2e). Paths are relative to this file's directory:
  rules/*.yml                  the generated rule files (compose mounts the profile's file)
  targets/<job>/<system>.yml   file_sd target lists. The file name is the `system` label
                               every target listed in it gets, which the rules of that
                               system select (docs/bundle.md, Isolation): list the exporter
                               of smart-city in targets/runbook-exporter/smart-city.yml.
  targets/{prometheus,alertmanager}.yml   the monitoring stack itself (no system)
The drills also shorten scrape/evaluation intervals; every other line is used as is.
The exporter runs its checks when scraped; with an HA pair of Prometheus servers, set
min_interval on expensive checks so both scrapes share one result (docs/deployment.md).
"""


def prometheus_config(profiles: Sequence[Profile]) -> dict[str, Any]:
    return {
        "global": {
            "scrape_interval": "30s",
            "scrape_timeout": "10s",
            "evaluation_interval": "30s",
        },
        "rule_files": ["rules/*.yml"],
        "alerting": {
            "alertmanagers": [{"file_sd_configs": [{"files": ["targets/alertmanager.yml"]}]}]
        },
        "scrape_configs": [
            *(_system_job(job) for job in scrape_jobs(profiles)),
            *(
                {"job_name": job, "file_sd_configs": [{"files": [f"targets/{job}.yml"]}]}
                for job in STACK_JOBS
            ),
        ],
    }


SERVICE_MONITOR_HEADER = """\
Prometheus Operator: scrape the exporter. The scrape timeout reaches the exporter as
X-Prometheus-Scrape-Timeout-Seconds and bounds every check (minus a 500ms offset).
Your Prometheus' serviceMonitorSelector decides which ServiceMonitors it reads; with
kube-prometheus-stack that is usually the label release: <helm release name>.
The Service's app.kubernetes.io/part-of label becomes the target label `system`, which
every generated rule selects (docs/bundle.md, Isolation): one Service per monitored
system, part-of set to the profile's system (smart-city, rta-cctv...). Give the other
exporters' ServiceMonitors (node_exporter, cAdvisor...) the same relabeling.
"""


def service_monitor() -> dict[str, Any]:
    meta = "__meta_kubernetes_service_label_" + re.sub(r"[^a-zA-Z0-9_]", "_", PART_OF)
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {
            "name": "runbook-exporter",
            "labels": {
                "app.kubernetes.io/name": "runbook-exporter",
                "app.kubernetes.io/component": "exporter",
            },
        },
        "spec": {
            "selector": {"matchLabels": {"app.kubernetes.io/name": "runbook-exporter"}},
            "endpoints": [
                {
                    "port": "http-metrics",
                    "path": "/metrics",
                    "interval": "30s",
                    "scrapeTimeout": "10s",
                    "relabelings": [
                        {
                            "sourceLabels": [meta],
                            "targetLabel": SYSTEM_LABEL,
                            "action": "replace",
                        }
                    ],
                }
            ],
        },
    }


def scrape_files(profiles: Sequence[Profile]) -> dict[str, str]:
    sources = ", ".join(f"profiles/{p.slug}.yml" for p in profiles)
    generated = GENERATED.format(source=sources)
    return {
        "compose/prometheus.yml": dump_yaml(prometheus_config(profiles), f"{generated}\n{HEADER}"),
        "deploy/kubernetes/servicemonitor.yaml": dump_yaml(
            service_monitor(),
            GENERATED.format(source="exporter/bundle/scrape.py") + "\n" + SERVICE_MONITOR_HEADER,
        ),
    }
