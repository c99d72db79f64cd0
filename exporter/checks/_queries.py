"""Named queries shared by the SQL kinds (postgres, sqlite).

A named query either returns one timestamp (``type: freshness``) that becomes
``freshness_timestamp_seconds{item=<name>}``, or numbers (``type: value``) that become
``db_query_value{query,column,label}``. Label columns keep the family's label names fixed:
their values, joined with ``/``, form the one ``label`` label; ``max_rows`` bounds how many
label values a query can produce.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from exporter.checks._timestamps import to_unix_seconds
from exporter.families import FRESHNESS
from exporter.fields import Reader
from exporter.logs import event
from exporter.samples import Family, Sink

DB_PING_SECONDS = Family(
    "db_ping_duration_seconds",
    "gauge",
    "Round trip of the cheapest request the database answers (SELECT 1, ping).",
)
QUERY_VALUE = Family(
    "db_query_value",
    "gauge",
    "A number returned by a named query; label joins the query's label columns with /.",
    ("query", "column", "label"),
)
QUERY_SUCCESS = Family(
    "db_query_success",
    "gauge",
    "1 when the named query ran and returned the expected shape, else 0.",
    ("query",),
)
QUERY_SECONDS = Family(
    "db_query_duration_seconds",
    "gauge",
    "Time the named query took (also when it failed).",
    ("query",),
)
QUERY_FAMILIES = (FRESHNESS, QUERY_VALUE, QUERY_SUCCESS, QUERY_SECONDS)

QUERY_TYPES = ("freshness", "value")
DEFAULT_MAX_ROWS = 100
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]*")


class QueryFailed(Exception):
    """One named query failed; the message is the operator's reason (no secrets, no SQL)."""


@dataclass(frozen=True)
class NamedQuery:
    name: str
    sql: str
    type: str  # "freshness" | "value"
    labels: tuple[str, ...]  # label columns
    max_rows: int


def parse_queries(reader: Reader, key: str = "queries") -> tuple[NamedQuery, ...]:
    """The ``queries:`` list of a SQL check."""
    queries: list[NamedQuery] = []
    seen: dict[str, str] = {}
    for item in reader.mappings(key):
        name = item.unique_name("name", seen, _NAME, "query name")
        sql = item.str("sql")
        kind = item.choice("type", QUERY_TYPES)
        labels = item.str_list("labels", [])
        if len(set(labels)) != len(labels):
            item.error("labels", "lists a column twice")
        max_rows = item.int("max_rows", DEFAULT_MAX_ROWS, minimum=1, maximum=10_000)
        item.done()
        queries.append(NamedQuery(name, sql, kind, tuple(labels), max_rows))
    return tuple(queries)


def cell_number(value: Any) -> float | None:
    """A SQL cell of a ``value`` query as a number; None for NULL (no sample); ValueError
    naming the type for text and anything else, since a text column is a query mistake."""
    if value is None:
        return None
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float | Decimal):
        return float(value)
    raise ValueError(type(value).__name__)


_Pending = list[tuple[Family, float, dict[str, str]]]  # samples checked, not yet written


def record_rows(
    query: NamedQuery, columns: Sequence[str], rows: Sequence[Sequence[Any]], out: Sink
) -> None:
    """Turn one query's result into samples, or raise :class:`QueryFailed` before writing any."""
    index = _column_index(query, columns, rows)
    data_columns = [c for c in columns if c not in query.labels]
    label_at = [index[c] for c in query.labels]
    pending: _Pending = []
    seen_labels: set[str] = set()
    for row in rows:
        label = "/".join("" if row[i] is None else str(row[i]) for i in label_at)
        if label in seen_labels:
            raise QueryFailed(
                f'returned two rows labelled "{label}": add the column that tells them apart '
                "to labels, or aggregate"
            )
        seen_labels.add(label)
        cells = [(column, row[index[column]]) for column in data_columns]
        if query.type == "freshness":
            _freshness_sample(query, cells, label, pending)
        else:
            _value_samples(query, cells, label, pending)
    for family, number, labels in pending:
        out.add(family, number, **labels)


def _column_index(
    query: NamedQuery, columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> dict[str, int]:
    """Column name -> position, once the result's shape fits the query (row count, label
    columns present)."""
    if len(rows) > query.max_rows:
        raise QueryFailed(f"returned {len(rows)} rows, more than max_rows {query.max_rows}")
    index = {name: i for i, name in enumerate(columns)}
    missing = [c for c in query.labels if c not in index]
    if missing:
        raise QueryFailed(
            f"has no column {', '.join(missing)} named in labels (columns: {', '.join(columns)})"
        )
    if not query.labels and len(rows) > 1:
        raise QueryFailed(f"returned {len(rows)} rows, expected one (or name label columns)")
    if query.type == "freshness" and not query.labels and not rows:
        raise QueryFailed("returned no rows, expected one timestamp")
    return index


def _freshness_sample(
    query: NamedQuery, cells: list[tuple[str, Any]], label: str, pending: _Pending
) -> None:
    """A freshness row's one timestamp cell (besides labels) as seconds since the epoch."""
    if len(cells) != 1:
        raise QueryFailed(
            f"expected one timestamp column besides labels, got {len(cells)} "
            f"({', '.join(column for column, _ in cells)})"
        )
    raw = cells[0][1]
    if raw is None and query.labels:
        return  # a source without data yet: no sample rather than a failure
    if raw is None:
        raise QueryFailed("expected a timestamp, got NULL")  # SQL's word for it
    try:
        seconds = to_unix_seconds(raw)
    except ValueError as exc:
        raise QueryFailed(str(exc)) from None
    item = f"{query.name}/{label}" if query.labels else query.name
    pending.append((FRESHNESS, seconds, {"item": item}))


def _value_samples(
    query: NamedQuery, cells: list[tuple[str, Any]], label: str, pending: _Pending
) -> None:
    """A value row's number cells, one sample each (NULL: none)."""
    if not cells:
        raise QueryFailed("returned no number column besides the label columns")
    for column, cell in cells:
        try:
            number = cell_number(cell)
        except ValueError as exc:
            raise QueryFailed(f"column {column} is {exc}, expected a number") from None
        if number is not None:
            labels = {"query": query.name, "column": column, "label": label}
            pending.append((QUERY_VALUE, number, labels))


Execute = Callable[[NamedQuery], Awaitable[tuple[Sequence[str], Sequence[Sequence[Any]]]]]


async def run_queries(queries: Sequence[NamedQuery], execute: Execute, out: Sink) -> dict[str, str]:
    """Run each query through ``execute``; returns ``{query name: failure reason}``.

    ``execute`` raises :class:`QueryFailed` for a problem of that query alone: it shows as
    ``db_query_success{query} 0`` and does not fail the check, because the connection is
    fine (a guessed table name is not a dead database). Anything else (the connection
    died) propagates and fails the whole check.
    """
    failures: dict[str, str] = {}
    for query in queries:
        started = time.perf_counter()
        try:
            columns, rows = await execute(query)
            record_rows(query, columns, rows, out)
        except QueryFailed as exc:
            failures[query.name] = str(exc)
            ok = False
        else:
            ok = True
        out.add(QUERY_SECONDS, time.perf_counter() - started, query=query.name)
        out.add(QUERY_SUCCESS, 1.0 if ok else 0.0, query=query.name)
    return failures


class QueryLog:
    """Logs a named query's failure once per change of reason, and its recovery.

    A failing query leaves the check successful (its own ``db_query_success`` says it
    failed), so the runner's check-failure log does not see it: this is its log line.
    """

    def __init__(self, check: str, kind: str) -> None:
        self._check = check
        self._kind = kind
        self._failing: dict[str, str] = {}

    def report(self, failures: Mapping[str, str]) -> None:
        for name, why in failures.items():
            if self._failing.get(name) != why:
                event(
                    logging.WARNING,
                    "query failed",
                    check=self._check,
                    kind=self._kind,
                    query=name,
                    reason=why,
                )
        for name in self._failing.keys() - failures.keys():
            event(logging.INFO, "query recovered", check=self._check, kind=self._kind, query=name)
        self._failing = dict(failures)

    @property
    def failing(self) -> dict[str, str]:
        """The queries failing at the last run and why, for the status page."""
        return dict(self._failing)
