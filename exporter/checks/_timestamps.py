"""Timestamps found in targets' data, and certificate expiry, as Unix seconds.

Health documents carry times as ISO 8601 strings (with or without a zone), epoch seconds
or epoch milliseconds, as numbers or numeric strings. Certificates carry ``notAfter`` in
DER; reading it here (instead of ``SSLSocket.getpeercert()``) also works when
verification is off, which is exactly when an operator wants to see an expired date.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, date, datetime
from decimal import Decimal

# Epoch values this large are milli-, micro- or nanoseconds: 1e11 s is the year 5138 and
# 1e11 ms is March 1973, so the readings cannot be confused for data of this century.
# Node's Date.now() writes milliseconds; Go and Java clocks often micro- or nanoseconds.
_EPOCH_SCALES = ((1e17, 1e9), (1e14, 1e6), (1e11, 1e3))
_NUMBER = re.compile(r"[+-]?\d+(\.\d+)?([eE][+-]?\d+)?")


def to_unix_seconds(value: object) -> float:
    """Unix seconds from a time as a target writes it; ValueError says why not.

    The one reader of times for every kind (http bodies, SQL rows, MongoDB documents):
    ISO 8601 text (without a zone read as UTC: servers that omit it almost always mean
    it), an epoch number in s, ms, µs or ns (as a number or numeric text), or a driver's
    ``datetime`` (naive = UTC) or ``date`` (midnight UTC). An epoch number below zero is
    refused rather than read as 1969: sources write -1 or 0-minus-something for "never",
    and a freshness of "56 years ago" would hide that reason behind a wrong age.
    """
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return aware.timestamp()
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC).timestamp()
    if isinstance(value, bool) or value is None:
        raise ValueError(f"expected a timestamp, got {_shown(value)}")
    if isinstance(value, int | float | Decimal):
        return _epoch(float(value), value)
    if not isinstance(value, str):
        raise ValueError(f"expected a timestamp, got {_shown(value)}")
    text = value.strip()
    if _NUMBER.fullmatch(text):
        return _epoch(float(text), value)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"expected an ISO 8601 time or epoch seconds, got {_shown(value)}"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def epoch_seconds(number: float) -> float:
    """An epoch number in seconds, scaled down when it is in ms, µs or ns (shared by every
    kind that reads times, so one value means one time wherever it is found)."""
    for limit, scale in _EPOCH_SCALES:
        if abs(number) >= limit:
            return number / scale
    return number


def _epoch(number: float, original: object) -> float:
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"expected a timestamp, got {_shown(original)}")
    return epoch_seconds(number)


def _shown(value: object) -> str:
    if isinstance(value, str):
        return f'"{value[:40]}..."' if len(value) > 40 else f'"{value}"'
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, list):
        return "a list"
    return "an object" if isinstance(value, dict) else f"a {type(value).__name__}"


class _Der:
    """Just enough DER reading to walk a certificate's outer structure."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def element(self, pos: int) -> tuple[int, int, int]:
        """(tag, start of contents, end of contents) of the element at ``pos``."""
        data = self.data
        if pos + 2 > len(data):
            raise ValueError("truncated certificate")
        tag, length = data[pos], data[pos + 1]
        start = pos + 2
        if length & 0x80:
            count = length & 0x7F
            if count == 0 or count > 4:
                raise ValueError("unsupported length in certificate")
            if start + count > len(data):
                raise ValueError("truncated certificate")
            length = int.from_bytes(data[start : start + count], "big")
            start += count
        end = start + length
        if end > len(data):
            raise ValueError("truncated certificate")
        return tag, start, end


def cert_not_after(der: bytes) -> float:
    """Unix time of a DER certificate's ``notAfter``; ValueError when it is not readable."""
    reader = _Der(der)
    tag, cert_start, _ = reader.element(0)
    if tag != 0x30:
        raise ValueError("not a certificate")
    tag, pos, _ = reader.element(cert_start)  # tbsCertificate
    if tag != 0x30:
        raise ValueError("not a certificate")
    tag, _, end = reader.element(pos)
    if tag == 0xA0:  # explicit version
        pos = end
    for _ in range(3):  # serialNumber, signature, issuer
        _, _, pos = reader.element(pos)
    tag, validity, _ = reader.element(pos)
    if tag != 0x30:
        raise ValueError("certificate has no validity")
    _, _, after_pos = reader.element(validity)  # notBefore
    tag, start, end = reader.element(after_pos)
    text = der[start:end].decode("ascii")
    if tag == 0x17:  # UTCTime: YYMMDDHHMMSSZ, years 1950-2049 (RFC 5280)
        year = int(text[:2])
        text = f"{1900 + year if year >= 50 else 2000 + year}{text[2:]}"
    elif tag != 0x18:  # GeneralizedTime: YYYYMMDDHHMMSSZ
        raise ValueError("unsupported time in certificate")
    parsed = datetime.strptime(text, "%Y%m%d%H%M%SZ").replace(tzinfo=UTC)
    return parsed.timestamp()
