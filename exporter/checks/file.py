"""``file``: freshness (mtime) and size of a file, or of the newest file matching a glob.

Backups (``smartcity_YYYYmmdd_HHMMSS.sql.gz``) and exports (``exports/latest.json``) go
stale silently; their mtime as ``freshness_timestamp_seconds`` lets PromQL compute the
age. A missing file is a failure with a reason, never a size of 0.
"""

from __future__ import annotations

import glob
import os
import stat
from dataclasses import dataclass

from exporter.alerting import DefaultAlert, Panel, TestInput, stale
from exporter.checks._blocking import OffLoop
from exporter.checks.base import BaseProbe, CheckFailed, CheckSpec, Kind
from exporter.families import FRESHNESS
from exporter.fields import Reader
from exporter.samples import Family, Sink

SIZE = Family(
    "file_size_bytes",
    "gauge",
    "Size of the file (for a glob: of the newest matching file).",
)
MATCHES = Family(
    "file_matches",
    "gauge",
    "Regular files matching the glob; for a path, 1 when it exists and 0 when not.",
)


@dataclass(frozen=True)
class FileOptions:
    path: str | None  # exactly one of path and glob
    glob: str | None
    item: str


@dataclass(frozen=True)
class _Found:
    matches: int
    mtime: float
    size: int


def parse(reader: Reader) -> FileOptions:
    path = reader.str("path", None) or None
    pattern = reader.str("glob", None) or None
    if not reader.has("path") and not reader.has("glob"):
        reader.error(None, "set path (one file) or glob (the newest matching file)")
    elif path is not None and pattern is not None:
        reader.error("glob", "set either path or glob, not both")
    if path is not None and glob.has_magic(path):
        reader.error("path", f'"{path}" contains wildcards: use glob for a pattern')
    item = reader.str("item", None) or path or pattern or ""
    return FileOptions(path=path, glob=pattern, item=item)


def _stat_path(path: str) -> _Found:
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return _Found(matches=0, mtime=0.0, size=0)
    except OSError as exc:
        raise CheckFailed(f"cannot stat {path}: {exc.strerror or exc}") from None
    return _Found(matches=1, mtime=info.st_mtime, size=info.st_size)


def _newest(pattern: str) -> _Found:
    matches = 0
    newest: os.stat_result | None = None
    for name in glob.iglob(pattern, recursive=True):
        try:
            info = os.stat(name)
        except OSError:
            continue  # removed between listing and stat (backup rotation): not a match
        if not stat.S_ISREG(info.st_mode):
            continue
        matches += 1
        if newest is None or info.st_mtime > newest.st_mtime:
            newest = info
    if newest is None:
        return _Found(matches=0, mtime=0.0, size=0)
    return _Found(matches=matches, mtime=newest.st_mtime, size=newest.st_size)


class FileProbe(BaseProbe[FileOptions]):
    def __init__(self, spec: CheckSpec[FileOptions]) -> None:
        super().__init__(spec)
        # A slow network filesystem must not stall the event loop (and the other checks).
        self._off_loop = OffLoop(f"stat {spec.options.glob or spec.options.path}")

    async def collect(self, out: Sink) -> None:
        options = self.options
        if options.glob is not None:
            found = await self._off_loop.run(_newest, options.glob)
            out.add(MATCHES, found.matches)
            if found.matches == 0:
                raise CheckFailed(f"no regular file matches {options.glob}")
        else:
            assert options.path is not None  # parse guarantees path or glob
            found = await self._off_loop.run(_stat_path, options.path)
            out.add(MATCHES, found.matches)
            if found.matches == 0:
                raise CheckFailed(f"{options.path} does not exist")
        out.add(FRESHNESS, found.mtime, item=options.item)
        out.add(SIZE, found.size)


KIND = Kind(
    name="file",
    summary="Freshness (mtime) and size of a file, or of the newest file matching a glob.",
    parse=parse,
    probe=FileProbe,
    families=(FRESHNESS, SIZE, MATCHES),
    target="path",
    alerts=(
        # A daily job (backup, export) plus two hours of grace.
        stale("file", 26 * 3600.0, for_=600.0),
        DefaultAlert(
            key="no_match",
            name="NoMatch",
            query="file_matches{$sel}",
            op="==",
            threshold=0,
            unit="count",
            for_=300.0,
            severity="warning",
            summary="no file matches for {{ $labels.check }}: nothing to judge freshness by",
            description=(
                "The path does not exist or the glob matches no regular file: the job "
                "that writes it never ran, wrote elsewhere, or its files were pruned."
            ),
            steps=(
                "List the directory; compare with the check's path or glob.",
                "Run the job that writes the file, or fix the pattern in the config.",
            ),
            reads="file_matches{$sel}",
            test=(TestInput("file_matches{$sel}", "gauge", "threshold + 1", "threshold"),),
        ),
        DefaultAlert(
            key="size_drop",
            name="SizeDropped",
            query="file_size_bytes{$sel} / max_over_time(file_size_bytes{$sel}[1d])",
            op="<",
            threshold=0.5,
            unit="ratio",
            for_=0.0,
            severity="warning",
            summary="{{ $labels.check }} is {value} of its largest size of the last day "
            "(warn below {threshold})",
            description=(
                "The newest file shrank against its own recent past: a backup or export "
                "that is truncated or nearly empty looks fresh but is not usable."
            ),
            steps=(
                "Compare the newest file with the previous one (size, line or row count).",
                "Check the writer's log for errors during the last run; rerun it.",
            ),
            reads="file_size_bytes{$sel}",
            test=(TestInput("file_size_bytes{$sel}", "drop", "threshold", "threshold - 0.01"),),
            settle=600.0,
        ),
        DefaultAlert(
            key="too_many",
            name="NotPruned",
            query="file_matches{$sel}",
            op=">",
            threshold=None,  # a retention ("keep the last 30") is the config's to give
            unit="count",
            for_=3600.0,
            severity="info",
            summary="{value} files match {{ $labels.check }}, more than the {threshold} kept",
            description=(
                "The job that prunes old files (backups, exports) is not running: the "
                "disk fills with copies nobody restores."
            ),
            steps=("List the matching files oldest first; check the pruning step's log.",),
            reads="file_matches{$sel}",
            test=(TestInput("file_matches{$sel}", "gauge", "threshold", "threshold + 1"),),
        ),
    ),
    panels=(
        Panel(
            "File age",
            'time() - freshness_timestamp_seconds{check=~"$check"}',
            "seconds",
            "{{check}} {{item}}",
            thresholds="Stale",
        ),
        Panel("File size", 'file_size_bytes{check=~"$check"}', "bytes"),
    ),
)
