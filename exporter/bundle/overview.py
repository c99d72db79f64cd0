"""An overview dashboard for any exporter config: every check's success, then the panels
each kind of the config declares (queues by state, freshness ages, pools against their
max, disks ...), selected by a ``check`` variable instead of fixed names, so it keeps
working when checks are added or renamed. Where a panel names an alert (``thresholds``)
it draws the thresholds of the alerts made from that kind default, from the
``runbook_alert_threshold`` recording rules."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable
from typing import Any

from exporter.alerting import Panel
from exporter.bundle.dashboards import DATASOURCE, label_variable

with warnings.catch_warnings():  # as in exporter/bundle/dashboards.py
    warnings.filterwarnings("ignore", "Prefer using dashboardv2", DeprecationWarning)
    from grafana_foundation_sdk.builders import dashboard as dash
    from grafana_foundation_sdk.builders import prometheus, timeseries
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models import dashboard as models
from exporter.bundle.render import grafana_unit
from exporter.checks import KINDS

WIDTH, HEIGHT = 12, 8


def _panel(
    panel_id: int, spec: Panel, x: int, y: int, runbook: str = "", kind: str = ""
) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .id(panel_id)
        .title(spec.title)
        .datasource(DATASOURCE)
        .with_target(
            prometheus.Dataquery()
            .ref_id("A")
            .expr(spec.query)
            .legend_format(spec.legend)
            .datasource(DATASOURCE)
        )
        .unit(grafana_unit(spec.unit))
        .min(0)
        .grid_pos(models.GridPos(h=HEIGHT, w=WIDTH, x=x, y=y))
    )
    if spec.thresholds:  # the alerts' own thresholds, as the bundle's rules record them
        # By the kind default the alerts were made from, for the selected checks: an
        # alert renamed in the config (``name: HourlySourceLagging``) keeps its line.
        selector = f'default="{kind}:{spec.thresholds}",runbook="{runbook}",check=~"$check"'
        panel = panel.with_target(
            prometheus.Dataquery()
            .ref_id("B")
            .expr(f"runbook_alert_threshold{{{selector}}}")
            .legend_format("{{alertname}} threshold")
            .datasource(DATASOURCE)
        )
    return panel


def overview(kinds: Iterable[str], slug: str, title: str) -> dict[str, Any]:
    """The dashboard JSON (classic model) for the check kinds a config uses."""
    builder = (
        dash.Dashboard(f"{title} (overview)")
        .uid(f"overview-{slug}"[:40])
        .tags(["runbook-exporter", slug, "overview"])
        .description("Every check of the exporter; one row per kind in the config.")
        .editable()
        .time("now-6h", "now")
        .timezone("browser")
        .refresh("1m")
        .with_variable(
            dash.DatasourceVariable("datasource").label("Data source").type("prometheus")
        )
        .with_variable(
            label_variable("check", "label_values(runbook_exporter_check_success, check)")
        )
    )
    panel_id, y = 1, 0
    builder = builder.with_panel(
        _panel(
            panel_id,
            Panel(
                "Check success (1 = ok)", 'runbook_exporter_check_success{check=~"$check"}', "bool"
            ),
            0,
            y,
        )
    )
    panel_id += 1
    builder = builder.with_panel(
        _panel(
            panel_id,
            Panel(
                "Check duration",
                'runbook_exporter_check_duration_seconds{check=~"$check"}',
                "seconds",
            ),
            WIDTH,
            y,
        )
    )
    panel_id += 1
    y += HEIGHT
    rows_start = 1000  # row ids after every panel id
    for row, kind_name in enumerate(sorted(set(kinds))):
        kind = KINDS[kind_name]
        if not kind.panels:
            continue
        builder = builder.with_row(
            dash.Row(f"{kind_name}")
            .id(rows_start + row)
            .grid_pos(models.GridPos(h=1, w=24, x=0, y=y))
        )
        y += 1
        for position, panel in enumerate(kind.panels):
            x = (position % 2) * WIDTH
            builder = builder.with_panel(_panel(panel_id, panel, x, y, slug, kind_name))
            panel_id += 1
            if position % 2 == 1 or position == len(kind.panels) - 1:
                y += HEIGHT
    data: dict[str, Any] = json.loads(json.dumps(builder.build(), cls=JSONEncoder))
    return data
