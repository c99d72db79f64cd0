"""Grafana dashboards, one per profile, built with Grafana's grafana-foundation-sdk.

One time-series panel per alert: the alert's own query (rates over ``$__rate_interval``,
every selector narrowed to the ``job``/``instance`` variables), the alert's threshold as
the panel's threshold step, the alert's unit. Plus Grafana provisioning files.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterable
from typing import Any

with warnings.catch_warnings():
    # The SDK nudges towards the v2 dashboard schema, which Grafana only provisions from
    # files behind a feature flag; the classic JSON model loads in every Grafana >= 10.
    warnings.filterwarnings("ignore", "Prefer using dashboardv2", DeprecationWarning)
    from grafana_foundation_sdk.builders import common as common_builders
    from grafana_foundation_sdk.builders import dashboard as dash
    from grafana_foundation_sdk.builders import prometheus, timeseries
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models import common as common_models
    from grafana_foundation_sdk.models import dashboard as models

from exporter.bundle.profile import Alert, Profile, fill
from exporter.bundle.promql import scoped
from exporter.bundle.render import GENERATED, dump_yaml, grafana_unit, threshold_text
from exporter.bundle.rules import runbook_url
from exporter.fields import format_duration

DATASOURCE = models.DataSourceRef(type_val="prometheus", uid="${datasource}")
SCOPE = 'job=~"$job",instance=~"$instance"'
PANEL_WIDTH, PANEL_HEIGHT = 12, 8
SEVERITY_COLORS = ("red", "orange", "yellow", "blue")
DASHBOARDS_PATH = "/var/lib/grafana/dashboards/runbook-exporter"


def dashboard_uid(profile: Profile) -> str:
    return f"runbook-{profile.slug}"[:40]


def panel_id(index: int) -> int:
    """Panel id of the alert at ``index`` in its profile; rows come after all panels."""
    return index + 1


def panel_query(alert: Alert) -> str:
    lookback = format_duration(alert.lookback)
    return scoped(fill(alert.query, window="$__rate_interval", lookback=lookback), SCOPE)


def threshold_steps(op: str, threshold: float, bad: str) -> list[tuple[float | None, str]]:
    """Grafana threshold steps ``(value, colour)`` that colour exactly the values where
    ``value op threshold`` holds (the alert's firing side) ``bad`` and every other value
    green. Grafana gives a value the colour of the last step whose value it is ``>=``
    (the first step, value None, is minus infinity), so a strict bound starts at the
    next float above the threshold: a healthy 0 on a ``> 0`` panel stays green."""
    above = math.nextafter(threshold, math.inf)
    good = "green"
    return {
        ">": [(None, good), (above, bad)],
        ">=": [(None, good), (threshold, bad)],
        "<": [(None, bad), (threshold, good)],
        "<=": [(None, bad), (above, good)],
        "==": [(None, good), (threshold, bad), (above, good)],
        "!=": [(None, bad), (threshold, good), (above, bad)],
    }[op]


def _thresholds(profile: Profile, alert: Alert) -> dash.ThresholdsConfig:
    rank = [s.name for s in profile.severities].index(alert.severity)
    bad = SEVERITY_COLORS[min(rank, len(SEVERITY_COLORS) - 1)]
    steps = [
        models.Threshold(value=value, color=color)
        for value, color in threshold_steps(alert.op, alert.threshold, bad)
    ]
    return dash.ThresholdsConfig().mode(models.ThresholdsMode.ABSOLUTE).steps(steps)


def _legend(alert: Alert) -> str:
    labels = [name for name, _ in alert.test.labels if name not in ("kind",)]
    return " ".join(f"{{{{{name}}}}}" for name in labels) or alert.short


def _panel(profile: Profile, index: int, alert: Alert, x: int, y: int) -> timeseries.Panel:
    description = (
        f"{alert.name} ({alert.severity}): fires when this is "
        f"{alert.op} {threshold_text(alert)}"
        + (f" for {format_duration(alert.for_)}" if alert.for_ else "")
        + f". Runbook: {alert.section}."
    )
    return (
        timeseries.Panel()
        .id(panel_id(index))
        .title(alert.panel_title)
        .description(description)
        .datasource(DATASOURCE)
        .with_target(
            prometheus.Dataquery()
            .ref_id("A")
            .expr(panel_query(alert))
            .legend_format(_legend(alert))
            .datasource(DATASOURCE)
        )
        .unit(grafana_unit(alert.unit))
        .min(0)
        .legend(
            common_builders.VizLegendOptions()
            .show_legend(True)
            .display_mode(common_models.LegendDisplayMode.LIST)
            .placement(common_models.LegendPlacement.BOTTOM)
        )
        .thresholds(_thresholds(profile, alert))
        .thresholds_style(
            common_builders.GraphThresholdsStyleConfig().mode(
                common_models.GraphThresholdsStyleMode.LINE_AND_AREA
            )
        )
        .links(
            [
                dash.DashboardLink(f"Runbook: {alert.name}")
                .type(models.DashboardLinkType.LINK)
                .url(runbook_url(profile, alert))
                .target_blank(True)
            ]
        )
        .grid_pos(models.GridPos(h=PANEL_HEIGHT, w=PANEL_WIDTH, x=x, y=y))
    )


def label_variable(name: str, query: str) -> dash.QueryVariable:
    """A multi-select variable over a label's values, all selected by default."""
    return (
        dash.QueryVariable(name)
        .label(name)
        .datasource(DATASOURCE)
        .query(query)
        .refresh(models.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(models.VariableOption(selected=True, text="All", value="$__all"))
    )


def build(profile: Profile) -> dict[str, Any]:
    builder = (
        dash.Dashboard(f"{profile.title} (runbook alerts)")
        .uid(dashboard_uid(profile))
        .tags(["runbook-exporter", profile.slug])
        .description(
            f"One panel per alert of profiles/{profile.slug}.yml; threshold "
            "steps are the alert thresholds."
        )
        .editable()
        .time("now-6h", "now")
        .timezone("browser")
        .refresh("1m")
        .with_variable(
            dash.DatasourceVariable("datasource").label("Data source").type("prometheus")
        )
        .with_variable(label_variable("job", "label_values(up, job)"))
        .with_variable(label_variable("instance", 'label_values(up{job=~"$job"}, instance)'))
    )
    y = 0
    row_id = len(profile.alerts) + 1
    # The missing-data guards (NoData, Absent) have no signal of their own to draw: the
    # panel of the alert they stand in for shows the gap.
    guards = profile.guard_names
    for severity in profile.severities:
        members = [
            (i, a)
            for i, a in enumerate(profile.alerts)
            if a.severity == severity.name and a.name not in guards
        ]
        if not members:
            continue
        builder = builder.with_row(
            dash.Row(
                f"{severity.name} ({severity.priority}, respond within {severity.response_text})"
            )
            .id(row_id)
            .grid_pos(models.GridPos(h=1, w=24, x=0, y=y))
        )
        row_id += 1
        y += 1
        for position, (index, alert) in enumerate(members):
            x = (position % 2) * PANEL_WIDTH
            builder = builder.with_panel(_panel(profile, index, alert, x, y))
            if position % 2 == 1 or position == len(members) - 1:
                y += PANEL_HEIGHT
    data: dict[str, Any] = json.loads(json.dumps(builder.build(), cls=JSONEncoder))
    return data


def provisioning_files() -> dict[str, str]:
    header = GENERATED.format(source="exporter/bundle/dashboards.py")
    providers = {
        "apiVersion": 1,
        "providers": [
            {
                "name": "runbook-exporter",
                "folder": "Runbooks",
                "type": "file",
                "disableDeletion": True,
                "allowUiUpdates": False,
                "updateIntervalSeconds": 60,
                "options": {"path": DASHBOARDS_PATH, "foldersFromFilesStructure": False},
            }
        ],
    }
    datasources = {
        "apiVersion": 1,
        "datasources": [
            {
                "name": "Prometheus",
                "uid": "prometheus",
                "type": "prometheus",
                "access": "proxy",
                "url": "http://prometheus:9090",
                "isDefault": True,
                "jsonData": {"timeInterval": "15s"},
            }
        ],
    }
    return {
        "dashboards/provisioning/dashboards/runbook-exporter.yml": dump_yaml(providers, header),
        "dashboards/provisioning/datasources/prometheus.yml": dump_yaml(datasources, header),
    }


def profile_dashboards(profile: Profile, kinds: Iterable[str]) -> dict[str, str]:
    """The profile's alert dashboard and the overview of the check ``kinds`` it uses
    (every check with its kind's panels, alerts or not: queues by state, ages against
    their thresholds, pools against their max, disks)."""
    from exporter.bundle.overview import overview

    board = overview(kinds, profile.slug, profile.title)
    return {
        f"dashboards/{profile.slug}.json": json.dumps(build(profile), indent=2, sort_keys=True)
        + "\n",
        f"dashboards/{profile.slug}-overview.json": json.dumps(board, indent=2, sort_keys=True)
        + "\n",
    }


def dashboard_files(profiles: list[Profile]) -> dict[str, str]:
    files: dict[str, str] = {}
    for p in profiles:
        files.update(profile_dashboards(p, (kind for _, kind in p.checks)))
    files.update(provisioning_files())
    return files
