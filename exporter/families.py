"""Families shared by several check kinds: the metric contract rules and dashboards rely on."""

from exporter.samples import Family

CHECK_SUCCESS = Family(
    "runbook_exporter_check_success",
    "gauge",
    "1 when the check's last run succeeded, 0 when it failed or timed out.",
    ("kind",),
)
CHECK_DURATION = Family(
    "runbook_exporter_check_duration_seconds",
    "gauge",
    "Wall time of the check's last run.",
    ("kind",),
)
FRESHNESS = Family(
    "freshness_timestamp_seconds",
    "gauge",
    "Unix time of the newest data seen by the check; age is time() minus this.",
    ("item",),
    past_time=True,
)
DB_POOL_CONNECTIONS = Family(
    "db_pool_connections",
    "gauge",
    "Connections of a database or pooler by state.",
    ("state",),
)
DB_POOL_MAX_CONNECTIONS = Family(
    "db_pool_max_connections",
    "gauge",
    "Connections the database or pool accepts at most (reserved slots excluded).",
)
