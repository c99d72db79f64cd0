"""Structured logging: one event per line, logfmt or JSON, secrets redacted."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import IO, Any

from exporter.redact import REDACTOR

LOGGER = logging.getLogger("runbook_exporter")
LEVELS = ("debug", "info", "warn", "error")


def event(level: int, msg: str, *, exc_info: bool = False, **fields: Any) -> None:
    """Log ``msg`` with key/value ``fields`` (rendered by the configured formatter)."""
    if LOGGER.isEnabledFor(level):
        LOGGER.log(level, msg, exc_info=exc_info, extra={"fields": fields})


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    out: dict[str, Any] = {
        "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        + f".{int(record.msecs):03d}Z",
        "level": {"WARNING": "warn"}.get(record.levelname, record.levelname.lower()),
        "msg": record.getMessage(),
    }
    out.update(getattr(record, "fields", {}))
    if record.exc_info and record.exc_info[1] is not None:
        exc = record.exc_info[1]
        out["err"] = f"{type(exc).__name__}: {exc}"
    return out


def _logfmt_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if text == "" or any(c in text for c in ' ="\n\t'):
        return json.dumps(text)
    return text


class LogfmtFormatter(logging.Formatter):
    """One ``key=value`` line a record (logfmt), secrets masked."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one logfmt line."""
        line = " ".join(f"{k}={_logfmt_value(v)}" for k, v in _fields(record).items())
        return REDACTOR.redact(line)


class JsonFormatter(logging.Formatter):
    """One JSON object a record, secrets masked."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one JSON line."""
        return REDACTOR.redact(json.dumps(_fields(record), default=str))


def setup(level: str = "info", fmt: str = "logfmt", stream: IO[str] | None = None) -> None:
    """Send the exporter's log to ``stream`` (stderr) at ``level``, as logfmt or json."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else LogfmtFormatter())
    LOGGER.handlers[:] = [handler]
    LOGGER.setLevel({"warn": logging.WARNING}.get(level, level.upper()))
    LOGGER.propagate = False
