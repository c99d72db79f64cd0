"""Timestamp, certificate-date and dotted-path parsing shared by the http and tcp kinds, and
the epoch numbers the http and database kinds read."""

from __future__ import annotations

import datetime as dt
import ssl
from decimal import Decimal
from typing import Any

import pytest
import trustme

from exporter.checks._jsonpath import JsonPath, PathError
from exporter.checks._queries import NamedQuery, QueryFailed, cell_number, record_rows
from exporter.checks._timestamps import cert_not_after, to_unix_seconds
from exporter.checks.http import json_number
from exporter.checks.redis import info_number
from exporter.samples import Sink

WHEN = dt.datetime(2026, 11, 22, 20, 15, 30, tzinfo=dt.UTC).timestamp()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2026-11-22T20:15:30Z", WHEN),
        ("2026-11-22T20:15:30.250Z", WHEN + 0.25),
        ("2026-11-22T21:15:30+01:00", WHEN),
        ("2026-11-22T20:15:30", WHEN),  # no zone: UTC
        ("2026-11-22", WHEN - (20 * 3600 + 15 * 60 + 30)),
        (int(WHEN), WHEN),
        (WHEN * 1000, WHEN),
        (f"{int(WHEN * 1000)}", WHEN),
        (" 1795378530 ", WHEN),
        (0, 0.0),
        (dt.datetime(2026, 11, 22, 20, 15, 30), WHEN),  # a driver's naive datetime: UTC
        (dt.datetime(2026, 11, 22, 21, 15, 30, tzinfo=dt.timezone(dt.timedelta(hours=1))), WHEN),
        (dt.date(2026, 11, 22), WHEN - (20 * 3600 + 15 * 60 + 30)),
        (Decimal("1795378530.250"), WHEN + 0.25),  # PostgreSQL numeric
    ],
)
def test_timestamps_are_read_in_every_form(raw: Any, expected: float) -> None:
    assert to_unix_seconds(raw) == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (True, "expected a timestamp, got true"),
        (None, "expected a timestamp, got null"),
        (-5, "expected a timestamp, got -5"),
        (float("nan"), "expected a timestamp, got nan"),
        ("last tuesday", 'expected an ISO 8601 time or epoch seconds, got "last tuesday"'),
        ([1], "expected a timestamp, got a list"),
        ({"at": 1}, "expected a timestamp, got an object"),
        (Decimal("-5"), "expected a timestamp, got -5"),
        ("-5", 'expected a timestamp, got "-5"'),
        ("inf", 'expected an ISO 8601 time or epoch seconds, got "inf"'),
        (b"1", "expected a timestamp, got a bytes"),
    ],
)
def test_non_timestamps_are_refused_with_a_reason(raw: Any, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{message}$"):
        to_unix_seconds(raw)


@pytest.mark.parametrize("year", [2027, 2049, 2050, 2055])
def test_certificate_not_after_in_utctime_and_generalizedtime(year: int) -> None:
    """RFC 5280: UTCTime up to 2049, GeneralizedTime from 2050 on."""
    not_after = dt.datetime(year, 3, 4, 5, 6, 7, tzinfo=dt.UTC)
    cert = trustme.CA().issue_cert("example.test", not_after=not_after)
    der = ssl.PEM_cert_to_DER_cert(cert.cert_chain_pems[0].bytes().decode())
    assert cert_not_after(der) == not_after.timestamp()


def test_garbage_is_not_a_certificate() -> None:
    with pytest.raises(ValueError, match="not a certificate"):
        cert_not_after(b"\x04\x03abc")
    with pytest.raises(ValueError, match="truncated certificate"):
        cert_not_after(b"\x30\x82\x05")


DOC = {"components": {"redis": {"status": "ok"}}, "sources": [{"id": "a"}, {"id": "b"}]}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (".", DOC),
        ("", DOC),
        ("components.redis.status", "ok"),
        ("sources.1.id", "b"),
    ],
)
def test_paths_find_values(path: str, expected: Any) -> None:
    assert JsonPath.parse(path).find(DOC) == expected


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("components.db.status", 'components.db.status: no key "db" in components'),
        ("sources.id", "sources.id: sources is a list, not an object"),
        ("sources.5.id", "sources.5.id: sources has 2 elements, no index 5"),
        (
            "components.redis.status.code",
            "components.redis.status.code: components.redis.status is a string, not an object",
        ),
    ],
)
def test_paths_that_lead_nowhere_say_where_they_stop(path: str, message: str) -> None:
    with pytest.raises(PathError) as caught:
        JsonPath.parse(path).find(DOC)
    assert str(caught.value) == message


def test_paths_inside_an_element_name_the_element() -> None:
    with pytest.raises(PathError) as caught:
        JsonPath.parse("state.health").find({"state": {}}, "checks[2]")
    assert str(caught.value) == 'checks[2].state.health: no key "health" in checks[2].state'


def test_empty_segments_are_refused() -> None:
    with pytest.raises(ValueError, match="empty segment"):
        JsonPath.parse("a..b")


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [
        (1_795_378_530, 1_795_378_530.0),  # seconds
        (1_795_378_530_250, 1_795_378_530.25),  # ms (Node's Date.now())
        (1_795_378_530_250_000, 1_795_378_530.25),  # µs
        (1_795_378_530_250_000_000, 1_795_378_530.25),  # ns
        ("1795378530250000", 1_795_378_530.25),
    ],
)
def test_every_kind_reads_one_epoch_number_as_one_time(raw: Any, seconds: float) -> None:
    # The http kind used to read anything >= 1e11 as ms (µs became the year 58,000)
    # while the SQL and Mongo kinds scaled µs and ns: one helper now serves all.
    assert to_unix_seconds(raw) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("cell", "reason"),
    [
        (-5, "expected a timestamp, got -5"),
        ("yesterday", 'expected an ISO 8601 time or epoch seconds, got "yesterday"'),
        (None, "expected a timestamp, got NULL"),
    ],
)
def test_sql_freshness_reads_times_with_the_same_function_as_http(cell: Any, reason: str) -> None:
    """Reconciled: ``_queries.to_unix_seconds`` returned -5.0 for -5 where the http
    kind's ``parse_timestamp`` refused it. Refusing won: a negative epoch number is a
    "never" sentinel, and exporting it as a time would page as "56 years stale"."""
    query = NamedQuery("seen", "SELECT ...", "freshness", (), 100)
    out = Sink("db")
    with pytest.raises(QueryFailed) as caught:
        record_rows(query, ["at"], [[cell]], out)
    assert str(caught.value) == reason
    assert out.samples == []


JSON_REFUSED = "^expected a number, got "
CELL_REFUSED = "^(Decimal|str|NoneType)$"  # the type: "column x is str, expected a number"


@pytest.mark.parametrize(
    ("raw", "json", "cell", "info"),
    [
        (3, 3.0, 3.0, 3.0),
        (True, 1.0, 1.0, 1.0),
        (Decimal("2.5"), JSON_REFUSED, 2.5, 2.5),  # json.loads never makes a Decimal
        (" 12 ", 12.0, CELL_REFUSED, 12.0),
        (None, JSON_REFUSED, None, None),
        ("n/a", JSON_REFUSED, CELL_REFUSED, None),
    ],
)
def test_three_numbers_by_meaning(raw: Any, json: Any, cell: Any, info: Any) -> None:
    """Three functions were all called ``_number`` and disagreed; they read different
    sources, so each is named by its source: a JSON value (numeric text is a number, a
    wrong type is the body's problem), a SQL cell (NULL is no sample, text is the
    query's mistake), a Redis INFO field (what a server does not report is left out)."""
    for read, expected in ((json_number, json), (cell_number, cell), (info_number, info)):
        if isinstance(expected, str):
            with pytest.raises(ValueError, match=expected):
                read(raw)
        else:
            assert read(raw) == expected
