"""Default alerts and overview panels a check kind declares beside its families.

A kind lists :class:`DefaultAlert` entries on its ``KIND``; ``runbook-exporter bundle
generate --config`` turns each (per configured check, with the check's own name in every
selector) into a Prometheus rule, a promtool test and a runbook page. A check may set,
override or disable them next to itself in the config::

    - name: ingest-queue
      kind: bullmq
      url: redis://127.0.0.1:6379/0
      alerts:
        failed_jobs: {above: 0, for: 15m, severity: warning}
        oldest_waiting_age: {above: 10m}
        paused: false

The exporter validates ``alerts:`` with every other key (one load reports every problem
with its path) and otherwise ignores it at runtime.

Queries write ``$sel`` where the selector of the check goes (``check="ingest-queue"``, plus
``system="..."`` when the bundle is generated for a named system) and ``{window}`` for rate
ranges. ``reads`` names the series the alert reads: when it disappears while the check
succeeds (a glob stops matching, an item leaves a JSON list), a guard alert says the data
is missing rather than letting the alert go quiet.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from exporter.fields import Reader, describe, is_list, is_mapping, parse_duration

SEVERITIES = ("critical", "warning", "info")
UNITS = ("seconds", "ratio", "percent", "bytes", "count", "bool")
SHAPES = ("gauge", "age", "until", "drop", "jump")
_ABOVE = (">", ">=")
_BELOW = ("<", "<=")
_EQUAL = ("==", "!=")


@dataclass(frozen=True)
class TestInput:
    """One input series of the alert's promtool test, in terms of its threshold.

    ``series`` uses ``$sel``; ``shape`` is ``gauge`` (a constant), ``age`` (a timestamp
    this many seconds old), ``until`` (a timestamp this many seconds ahead), ``drop``
    (1000 for the settle time, then 1000 times this) or ``jump`` (a counter at 0 for the
    settle time, then this much higher); ``quiet``/``fire`` are arithmetic over
    ``threshold``: just on the quiet side, just past. The condition turns true exactly at
    the end of the settle time, so the test pins ``for`` too.
    """

    series: str
    shape: str
    quiet: str
    fire: str


@dataclass(frozen=True)
class DefaultAlert:
    """One alert a kind proposes for every check of that kind.

    ``threshold`` None means off until the config sets one (a query value has no
    universal limit). ``name`` is the CamelCase suffix of the alertname (the check's name
    comes first); ``labels`` are the labels (besides check) the test expects the alert
    to keep from its inputs.
    """

    key: str
    name: str
    query: str
    op: str
    threshold: float | None
    unit: str
    for_: float
    severity: str
    summary: str
    description: str
    steps: tuple[str, ...]
    reads: str
    test: tuple[TestInput, ...]
    labels: tuple[tuple[str, str], ...] = ()
    value: str | None = None  # the firing test's alert value over threshold/fire, if not fire
    settle: float = 0.0  # seconds the test inputs run before `for` starts (rate windows)
    window: str = "5m"
    # Missing data another alert already pages for: the guard leaves it out (a failing
    # query's values are gone, and "query failing" says so). ``unless on (...) (...)``
    # with ``$sel``; its test input (value 0) proves the guard stays quiet then.
    missing_unless: str = ""
    missing_unless_input: str = ""
    # The label that tells this alert's series apart within one check (item, query,
    # queue, component): a setting may name some of its values to give them their own
    # threshold (``stale: [{above: 24h, item: daily-source}]``).
    scope: str = ""
    # False: proposed, but off until the check's ``alerts:`` turns it on (a runbook's
    # own policy, such as "AOF must be enabled", that is no universal default).
    on: bool = True


@dataclass(frozen=True)
class Panel:
    """An overview panel of a kind: ``query`` selects ``check=~"$check"`` itself."""

    title: str
    query: str
    unit: str
    legend: str = "{{check}}"
    # The name of this kind's DefaultAlert (``Stale``, ``PoolNearMax``) whose alerts'
    # thresholds the panel draws beside the signal, from the bundle's
    # ``runbook_alert_threshold`` recording rules (labelled ``default="<kind>:<name>"``).
    thresholds: str = ""


@dataclass(frozen=True)
class AlertSetting:
    """What a check's ``alerts.<key>`` says: off, or its own threshold/for/severity."""

    key: str
    enabled: bool
    threshold: float | None = None
    for_: float | None = None
    severity: str | None = None
    name: str | None = None  # the alertname (suffix after a profile's prefix)
    scope: tuple[str, ...] = ()  # values of the default's scope label this setting is for
    unit: str | None = None  # a query value's unit (seconds: thresholds like 7d)


CHECK_FAILING = DefaultAlert(
    key="check_failing",
    name="Failing",
    query="runbook_exporter_check_success{$sel}",
    op="==",
    threshold=0,
    unit="bool",
    for_=300.0,
    severity="critical",
    summary="check {{ $labels.check }} ({{ $labels.kind }}) is failing: its data is missing",
    description=(
        "The check has not answered as expected for {for}. Its target is down or "
        "answering wrongly, and every other alert of this check sees no data meanwhile."
    ),
    steps=(
        "Open the exporter's status page (/) or its log: the check's reason names what "
        "failed (connection refused, status 503, no file matches ...).",
        "Fix the target, or the check's configuration when the target moved.",
    ),
    reads="runbook_exporter_check_success{$sel}",
    test=(
        TestInput(
            'runbook_exporter_check_success{$sel,kind="$kind"}',
            "gauge",
            "threshold + 1",
            "threshold",
        ),
    ),
    labels=(("kind", "$kind"),),
)
"""Every kind has it: the check as a whole failing (its other series are missing then)."""

COMMON_ALERTS = (CHECK_FAILING,)


def down(
    what: str,
    for_: float,
    steps: tuple[str, ...],
    name: str = "Down",
    state: str = "down (the connection fails)",
) -> DefaultAlert:
    """The kind's own wording of ``check_failing`` (a kind that declares an alert with
    key ``check_failing`` replaces the common one): for connections, "down"."""
    return DefaultAlert(
        key="check_failing",
        name=name,
        query=CHECK_FAILING.query,
        op="==",
        threshold=0,
        unit="bool",
        for_=for_,
        severity="critical",
        summary=f"{what} {{{{ $labels.check }}}} is {state}: its data is missing",
        description=(
            "The exporter cannot reach or open it, or it refuses the exporter (the reason "
            "is on the status page). This is about the connection: a named query that "
            "fails pages as that query failing, not as this."
        ),
        steps=steps,
        reads=CHECK_FAILING.reads,
        test=CHECK_FAILING.test,
        labels=CHECK_FAILING.labels,
    )


def stale(
    what: str,
    threshold: float,
    for_: float = 300.0,
    severity: str = "warning",
    from_queries: bool = False,
) -> DefaultAlert:
    """``time() - freshness_timestamp_seconds`` past ``threshold``: data stopped coming.
    ``from_queries``: the items are named queries, whose failure pages by itself."""
    return DefaultAlert(
        key="stale",
        name="Stale",
        query="time() - freshness_timestamp_seconds{$sel}",
        op=">",
        threshold=threshold,
        unit="seconds",
        for_=for_,
        severity=severity,
        summary=f"{what} {{{{ $labels.item }}}} of {{{{ $labels.check }}}} is {{value}} "
        "old (max {threshold})",
        description=(
            "The newest data seen is older than the allowed age: whatever writes it "
            "(ingestion, a backup job, an export) stopped or is failing."
        ),
        steps=(
            "Find the writer of this item (the job, service or cron entry) and read its "
            "log for the last run.",
            "Run it once by hand when safe, and watch the age fall on the overview dashboard.",
        ),
        reads="freshness_timestamp_seconds{$sel}",
        test=(
            TestInput(
                'freshness_timestamp_seconds{$sel,item="x"}', "age", "threshold", "threshold * 1.01"
            ),
        ),
        labels=(("item", "x"),),
        # A freshness query that fails: its item (the query's name) is gone, and
        # "query failing" already pages for it.
        missing_unless=(
            'unless on (check, item) label_replace(db_query_success{$sel} == 0, "item", "$1", '
            '"query", "(.*)")'
            if from_queries
            else ""
        ),
        missing_unless_input='db_query_success{$sel,query="x"}' if from_queries else "",
        scope="item",
    )


def dropped(
    series: str,
    *,
    threshold: float | None,
    summary: str,
    description: str,
    steps: tuple[str, ...],
    labels: tuple[tuple[str, str], ...] = (),
    key: str = "size_drop",
    name: str = "SizeDropped",
    scope: str = "",
) -> DefaultAlert:
    """A value fell below ``threshold`` times its own largest of the last day: a backup
    or export that shrank, a record count that declined. ``series`` is the selector with
    ``$sel``; ``labels`` are the labels its test series carries (and the alert keeps)."""
    test_labels = "".join(f',{label}="{value}"' for label, value in labels)
    selected = series.replace("{$sel}", "{$sel" + test_labels + "}")
    return DefaultAlert(
        key=key,
        name=name,
        # A largest of 0 gives NaN or +Inf, which never compares below the threshold.
        query=f"{series} / max_over_time({series}[1d])",
        op="<",
        threshold=threshold,
        unit="ratio",
        for_=0.0,
        severity="warning",
        summary=summary,
        description=description,
        steps=steps,
        reads=series,
        # Firing just past the threshold (0.5 % of it), so a threshold moved 1 % toward
        # firing fails the test (at "- 0.01" a 0.5 moved to 0.495 still fired).
        test=(TestInput(selected, "drop", "threshold", "threshold * 0.995"),),
        labels=labels,
        settle=600.0,
        scope=scope,
    )


def cert_expiring(family: str) -> DefaultAlert:
    """The default alert of a kind that reads a TLS certificate: ``family`` (the expiry
    as a Unix time) is less than 14 days ahead."""
    return DefaultAlert(
        key="cert_expiring",
        name="CertExpiring",
        query=f"{family}{{$sel}} - time()",
        op="<",
        threshold=14 * 86400.0,
        unit="seconds",
        for_=600.0,
        severity="warning",
        summary="TLS certificate of {{ $labels.check }} expires in {value} (warn at {threshold})",
        description="Renew the certificate before it expires; clients will refuse it then.",
        steps=(
            "Check the renewal job (certbot, cert-manager) and its log.",
            "Renew and reload the server; the remaining time on the dashboard jumps.",
        ),
        reads=f"{family}{{$sel}}",
        test=(TestInput(f"{family}{{$sel}}", "until", "threshold", "threshold - 60"),),
    )


def pool_near_max(what: str) -> DefaultAlert:
    """The default alert of a kind that writes ``db_pool_connections`` and
    ``db_pool_max_connections``: the pool of ``what`` (a server, a pooler) is nearly full."""
    return DefaultAlert(
        key="pool_near_max",
        name="PoolNearMax",
        query=(
            'sum without (state) (db_pool_connections{$sel,state!~"client_.*"}) '
            "/ db_pool_max_connections{$sel}"
        ),
        op=">",
        threshold=0.8,
        unit="ratio",
        for_=600.0,
        severity="warning",
        summary=f"{what} {{{{ $labels.check }}}} uses {{value}} of its connections "
        "(warn above {threshold})",
        description=(
            "Near the maximum, new clients are refused or queue. Look for leaked "
            "connections (idle in transaction) or a pool sized too small."
        ),
        steps=(
            "List connections by client and state (pg_stat_activity, SHOW POOLS, db.currentOp()).",
            "Fix the leaking client or raise the limit deliberately.",
        ),
        reads="db_pool_max_connections{$sel}",
        # Of 1000 connections, five past the threshold is 0.5 % past it: a threshold
        # moved 1 % (either way) fails the test (with 100, one past was 1.25 %).
        test=(
            TestInput(
                'db_pool_connections{$sel,state="active"}',
                "gauge",
                "threshold * 1000",
                "threshold * 1000 + 5",
            ),
            TestInput("db_pool_max_connections{$sel}", "gauge", "1000", "1000"),
        ),
        value="(threshold * 1000 + 5) / 1000",
    )


# Panels of the pool and query families that several database kinds share.
POOL_PANEL = Panel(
    "Connections of max",
    "sum without (state) "
    '(db_pool_connections{check=~"$check",state!~"client_.*"}) / '
    'db_pool_max_connections{check=~"$check"}',
    "ratio",
    thresholds="PoolNearMax",
)
QUERY_SUCCESS_PANEL = Panel(
    "Query success", 'db_query_success{check=~"$check"}', "bool", "{{check}} {{query}}"
)

QUERY_FAILING = DefaultAlert(
    key="query_failing",
    name="QueryFailing",
    query="db_query_success{$sel}",
    op="==",
    threshold=0,
    unit="bool",
    for_=300.0,
    severity="warning",
    summary="query {{ $labels.query }} of {{ $labels.check }} is failing (the database "
    "answers): its data is missing",
    description=(
        "The connection works; this one query does not (a wrong table name, an empty "
        "table, a timeout, a result of the wrong shape). The reason is in the exporter's "
        'log ("query failed"). Its values and freshness are missing meanwhile.'
    ),
    steps=(
        'Read the exporter log line "query failed" for this check and query.',
        "Run the query by hand read-only; fix it in the config or fix the schema.",
    ),
    reads="db_query_success{$sel}",
    test=(TestInput('db_query_success{$sel,query="q"}', "gauge", "threshold + 1", "threshold"),),
    labels=(("query", "q"),),
    scope="query",
)

QUERY_VALUE = DefaultAlert(
    key="query_value",
    name="QueryValue",
    query="db_query_value{$sel}",
    op=">",
    threshold=None,
    unit="count",
    for_=300.0,
    severity="warning",
    summary="{{ $labels.query }}.{{ $labels.column }} {{ $labels.label }} of "
    "{{ $labels.check }} is {value} (limit {threshold})",
    description="A value the check's named query returns is past the limit set in the config.",
    steps=("Open the query in the config to see what the value counts, and act on it.",),
    reads="db_query_value{$sel}",
    missing_unless="unless on (check, query) (db_query_success{$sel} == 0)",
    missing_unless_input='db_query_success{$sel,query="q"}',
    test=(
        TestInput(
            'db_query_value{$sel,query="q",column="n",label=""}',
            "gauge",
            "threshold",
            "threshold + 1",
        ),
    ),
    labels=(("query", "q"), ("column", "n"), ("label", "")),
    scope="query",
)
"""Off until the config gives a threshold (``alerts: {query_value: {above: 100}}``)."""


def _direction(op: str) -> str:
    if op in _ABOVE:
        return "above"
    if op in _BELOW:
        return "below"
    return "equal"


def _threshold(reader: Reader, key: str, unit: str) -> float | None:
    raw = reader.raw(key)
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        return float(raw)
    if isinstance(raw, str) and unit == "seconds":
        seconds = parse_duration(raw)
        if seconds is not None:
            return seconds
    wanted = "a number or a duration such as 10m" if unit == "seconds" else "a number"
    reader.error(key, f"expected {wanted}, got {describe(raw)}")
    return None


def kind_alerts(defaults: tuple[DefaultAlert, ...]) -> tuple[DefaultAlert, ...]:
    """A kind's alerts: the common ones (unless the kind words them itself), then its own."""
    own = {alert.key for alert in defaults}
    return (*(a for a in COMMON_ALERTS if a.key not in own), *defaults)


# A severity is a routing name: critical/warning/info by default, a profile's own
# (major, high, P2 ...) where its routing defines them; the bundle checks it exists.
SEVERITY_NAME = re.compile(r"[a-z][a-z0-9_-]*")
ALERT_NAME = re.compile(r"[A-Z][A-Za-z0-9]*")
_SETTING_KEYS = "above/below/equal, for, severity, name, enabled"


def parse_alert_settings(
    reader: Reader,
    defaults: tuple[DefaultAlert, ...],
    severities: tuple[str, ...],
) -> tuple[AlertSetting, ...]:
    """The check's ``alerts:`` mapping, validated against its kind's default alerts.

    A value is ``true``/``false``, a mapping of settings, or a list of mappings that
    each name values of the alert's scope label (one alert each, with its own
    threshold). ``severities``: the names a setting may give (the kinds' own, plus those
    of the config's ``bundle.routing``)."""
    raw = reader.raw("alerts", None)
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        reader.error(
            "alerts", f"expected a mapping of alert names to settings, got {describe(raw)}"
        )
        return ()
    by_key = {alert.key: alert for alert in kind_alerts(defaults)}
    settings: list[AlertSetting] = []
    for key, value in raw.items():
        path_key = f"alerts.{key}"
        default = by_key.get(str(key))
        if default is None:
            reader.error(path_key, f"unknown alert (this kind has: {', '.join(by_key)})")
        elif isinstance(value, bool):
            settings.append(AlertSetting(default.key, value))
        elif isinstance(value, dict):
            item = Reader(value, reader.child_path(path_key), reader.problems)
            settings.append(_setting(item, default, severities))
        elif is_list(value) and default.scope:
            for index, entry in enumerate(value):
                path = f"{reader.child_path(path_key)}[{index}]"
                if not is_mapping(entry):
                    reader.problems.add(path, f"expected a mapping, got {describe(entry)}")
                    continue
                settings.append(_setting(Reader(entry, path, reader.problems), default, severities))
        else:
            listed = f", or a list of them each naming its {default.scope}" if default.scope else ""
            reader.error(
                path_key,
                f"expected true, false or a mapping with {_SETTING_KEYS}{listed}, "
                f"got {describe(value)}",
            )
    return tuple(settings)


def _setting(item: Reader, default: DefaultAlert, severities: tuple[str, ...]) -> AlertSetting:
    """One mapping of settings; one naming values of the default's scope label is for
    those only, one that names none for every other."""
    enabled = item.bool("enabled", True)
    direction = _direction(default.op)
    # A query value counts whatever the query returns: an age in seconds reads 7d.
    unit = item.choice("unit", UNITS, None) if default.key == "query_value" else None
    threshold = None
    for side in ("above", "below", "equal"):
        if not item.has(side):
            continue
        if side != direction:
            item.error(side, f"this alert compares with {default.op}: write {direction}: instead")
            item.ignore(side)
            continue
        threshold = _threshold(item, side, unit or default.unit)
    for_ = item.duration("for", None, positive=False) if item.has("for") else None
    severity = item.choice("severity", severities, None)
    name = item.str("name", None)
    if isinstance(name, str) and not ALERT_NAME.fullmatch(name):
        item.error("name", f"use CamelCase letters and digits, got {describe(name)}")
        name = None
    scope: tuple[str, ...] = ()
    if default.scope:
        scope = tuple(item.str_list(default.scope, ()))
    item.ignore("above", "below", "equal")
    item.done()
    # No default threshold: the alert stays off until one is given.
    no_threshold = not any(item.has(side) for side in ("above", "below", "equal"))
    if default.threshold is None and enabled and no_threshold:
        item.error(None, f"give a threshold ({direction}: ...): this alert has none by default")
    return AlertSetting(default.key, enabled, threshold, for_, severity, name, scope, unit)


def alert_settings_schema(defaults: tuple[DefaultAlert, ...]) -> dict[str, Any]:
    """The JSON Schema of a check's ``alerts:`` for a kind (``runbook-exporter schema``)."""
    duration = {"type": "string", "pattern": r"^([0-9]+(\.[0-9]+)?(ms|s|m|h|d|w|y))+$"}
    properties: dict[str, Any] = {}
    for alert in kind_alerts(defaults):
        side = _direction(alert.op)
        threshold: dict[str, Any] = {"type": "number"}
        if alert.unit == "seconds" or alert.key == "query_value":
            threshold = {"anyOf": [threshold, duration]}
        fields: dict[str, Any] = {
            side: threshold,
            "for": duration,
            "severity": {"type": "string", "pattern": f"^{SEVERITY_NAME.pattern}$"},
            "name": {"type": "string", "pattern": f"^{ALERT_NAME.pattern}$"},
            "enabled": {"type": "boolean"},
        }
        if alert.key == "query_value":
            fields["unit"] = {"enum": list(UNITS)}
        names = {"type": "array", "items": {"type": "string"}}
        if alert.scope:
            fields[alert.scope] = {"anyOf": [{"type": "string"}, names]}
        setting = {"type": "object", "properties": fields, "additionalProperties": False}
        forms: list[dict[str, Any]] = [{"type": "boolean"}, setting]
        if alert.scope:
            forms.append({"type": "array", "items": setting})
        properties[alert.key] = {
            "description": f"{alert.name}: "
            + ("off until a threshold is set" if alert.threshold is None else "on by default")
            + "; true, false, or its own threshold, for, severity and name"
            + (f"; a list gives {alert.scope}s their own" if alert.scope else ""),
            "anyOf": forms,
        }
    return {
        "type": "object",
        "description": "Default alerts of this check for `bundle generate --config` "
        "(docs/metrics.md#default-alerts); the exporter validates and ignores them.",
        "properties": properties,
        "additionalProperties": False,
    }
