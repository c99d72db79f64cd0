"""What a person reads about a check run: its main values in one line, and a debug view.

The status page, ``check --format table`` and the ``/debug`` and ``/probe?debug=true``
views all use these, so a queue depth reads the same everywhere.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from exporter.fields import format_duration
from exporter.redact import REDACTOR
from exporter.samples import Sample

MAX_LABEL_TEXT = 24  # a label value (a path, a URL) is cut, never the number


def _shown_number(value: float) -> str:
    """A sample value for a person: whole numbers without .0, others to 4 digits."""
    if value != value:
        return "NaN"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.4g}"


def key_value(sample: Sample, now: float | None = None) -> str:
    """``bullmq_queue_jobs{queue=ingest,state=waiting}=12``; timestamps as their age."""
    family = sample.family
    wanted = set(family.labels)
    labels = ",".join(f"{k}={_cut(v)}" for k, v in sample.labels if k in wanted)
    name = f"{family.name}{{{labels}}}" if labels else family.name
    if family.name.endswith("_timestamp_seconds") and sample.value > 0:
        age = (time.time() if now is None else now) - sample.value
        shown = f"{format_duration(round(age))} ago" if age >= 0 else "in the future"
    elif family.name.endswith("_bytes") and sample.value >= 1024:
        shown = _bytes(sample.value)
    else:
        shown = _shown_number(sample.value)
    return f"{name}={shown}"


def _cut(text: str) -> str:
    return text if len(text) <= MAX_LABEL_TEXT else "..." + text[-(MAX_LABEL_TEXT - 3) :]


def _bytes(value: float) -> str:
    units = ("KiB", "MiB", "GiB", "TiB", "PiB")
    index = 0
    value /= 1024
    while value >= 1024 and index < len(units) - 1:
        value /= 1024
        index += 1
    return f"{value:.1f} {units[index]}"


def key_values(samples: Sequence[Sample], limit: int = 6, now: float | None = None) -> list[str]:
    """The first ``limit`` values of a run, plus how many more there are."""
    shown = [key_value(s, now) for s in samples[:limit]]
    if len(samples) > limit:
        shown.append(f"(+{len(samples) - limit} more)")
    return shown


def debug_text(
    title: str,
    spec: Mapping[str, Any],
    *,
    success: bool | None,
    duration: float | None,
    error: str | None,
    samples: Iterable[Sample],
    finished_at: float | None = None,
) -> str:
    """A plain-text account of one run, as blackbox_exporter's ``debug=true`` gives."""
    lines = [title, "", "Requested (secrets masked):", json.dumps(spec, indent=2), ""]
    if success is None:
        lines.append("Result: not run yet")
    else:
        lines.append(f"Result: {'success' if success else 'FAILED'}")
        if duration is not None:
            lines.append(f"Duration: {duration * 1000:.1f} ms")
        if finished_at is not None:
            when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(finished_at))
            lines.append(f"Finished: {when}")
        if error:
            lines.append(f"Why it failed: {REDACTOR.redact(error)}")
    lines += ["", "What came back:"]
    count = 0
    for sample in samples:
        labels = ",".join(f'{k}="{v}"' for k, v in sample.labels)
        lines.append(f"{sample.family.name}{{{labels}}} {_shown_number(sample.value)}")
        count += 1
    if not count:
        lines.append("(no series)")
    return REDACTOR.redact("\n".join(lines)) + "\n"
