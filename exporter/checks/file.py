"""``file``: freshness (mtime) and size of a file, or of the newest file matching a glob.

Backups (``smartcity_YYYYmmdd_HHMMSS.sql.gz``) and exports (``exports/latest.json``) go
stale silently; their mtime as ``freshness_timestamp_seconds`` lets PromQL compute the
age. A missing file is a failure with a reason, never a size of 0.

``type: directory`` watches backups that are directories (``/mnt/backups/rta-cctv/
20250124_120000/``): the newest directory by its own mtime, and as its size the bytes of
the regular files under it, walked without following symlinks and bounded by
``max_entries`` so that a huge tree cannot hold the worker thread for long.
"""

from __future__ import annotations

import glob
import os
import stat
from dataclasses import dataclass

from exporter.alerting import DefaultAlert, Panel, TestInput, dropped, stale
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
    "Entries of the check's type (regular files unless type says otherwise) matching the "
    "glob; for a path, 1 when it exists as that type and 0 when not.",
)
OLDEST = Family(
    "file_oldest_timestamp_seconds",
    "gauge",
    "mtime of the oldest entry matching the glob (globs only): whether pruning keeps the "
    "retention the runbook names.",
    past_time=True,
)

# What an entry may be: a regular file, a directory, or either.
TYPES = ("file", "directory", "any")
DEFAULT_MAX_ENTRIES = 10_000


@dataclass(frozen=True)
class FileOptions:
    path: str | None  # exactly one of path and glob
    glob: str | None
    item: str
    type: str = "file"
    max_entries: int = DEFAULT_MAX_ENTRIES


@dataclass(frozen=True)
class _Found:
    matches: int
    mtime: float
    size: int
    problem: str = ""  # why a path that exists does not count (the wrong type)
    oldest: float = 0.0  # mtime of the oldest match (globs only)


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
    kind = reader.choice("type", TYPES, "file")
    max_entries = reader.int("max_entries", DEFAULT_MAX_ENTRIES, minimum=1, maximum=1_000_000)
    return FileOptions(path=path, glob=pattern, item=item, type=kind, max_entries=max_entries)


def _is_wanted(mode: int, wanted: str) -> bool:
    if stat.S_ISREG(mode):
        return wanted in ("file", "any")
    if stat.S_ISDIR(mode):
        return wanted in ("directory", "any")
    return False  # sockets, fifos, devices: never a backup or an export


def _what(wanted: str) -> str:
    return {"file": "regular file", "directory": "directory"}.get(wanted, "file or directory")


def _size(path: str, info: os.stat_result, max_entries: int) -> int:
    """A regular file's size; a directory's: the bytes of the regular files under it."""
    if not stat.S_ISDIR(info.st_mode):
        return info.st_size
    total = 0
    entries = 0
    pending = [path]
    while pending:
        try:
            with os.scandir(pending.pop()) as listing:
                for entry in listing:
                    entries += 1
                    if entries > max_entries:
                        raise CheckFailed(
                            f"more than {max_entries} entries under {path}: raise max_entries "
                            "or watch a file inside it"
                        )
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            pending.append(entry.path)
                        elif entry.is_file(follow_symlinks=False):
                            total += entry.stat(follow_symlinks=False).st_size
                    except OSError:
                        continue  # removed while walking (rotation): not counted
        except FileNotFoundError:
            continue  # a subdirectory removed while walking
        except OSError as exc:
            raise CheckFailed(f"cannot list {path}: {exc.strerror or exc}") from None
    return total


def _stat_path(path: str, wanted: str, max_entries: int) -> _Found:
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return _Found(matches=0, mtime=0.0, size=0)
    except OSError as exc:
        raise CheckFailed(f"cannot stat {path}: {exc.strerror or exc}") from None
    if not _is_wanted(info.st_mode, wanted):
        return _Found(matches=0, mtime=0.0, size=0, problem=f"{path} is not a {_what(wanted)}")
    return _Found(matches=1, mtime=info.st_mtime, size=_size(path, info, max_entries))


def _newest(pattern: str, wanted: str, max_entries: int) -> _Found:
    matches = 0
    newest: tuple[str, os.stat_result] | None = None
    oldest = 0.0
    for name in glob.iglob(pattern, recursive=True):
        try:
            info = os.stat(name)
        except OSError:
            continue  # removed between listing and stat (backup rotation): not a match
        if not _is_wanted(info.st_mode, wanted):
            continue
        matches += 1
        if newest is None or info.st_mtime > newest[1].st_mtime:
            newest = (name, info)
        if matches == 1 or info.st_mtime < oldest:
            oldest = info.st_mtime
    if newest is None:
        return _Found(matches=0, mtime=0.0, size=0)
    name, info = newest
    # Only the newest entry's size is computed: a directory walk per match would grow
    # with the retention (30 daily backups), not with what is reported.
    size = _size(name, info, max_entries)
    return _Found(matches=matches, mtime=info.st_mtime, size=size, oldest=oldest)


class FileProbe(BaseProbe[FileOptions]):
    def __init__(self, spec: CheckSpec[FileOptions]) -> None:
        super().__init__(spec)
        # A slow network filesystem must not stall the event loop (and the other checks).
        self._off_loop = OffLoop(f"stat {spec.options.glob or spec.options.path}")

    async def collect(self, out: Sink) -> None:
        options = self.options
        if options.glob is not None:
            found = await self._off_loop.run(
                _newest, options.glob, options.type, options.max_entries
            )
            out.add(MATCHES, found.matches)
            if found.matches == 0:
                raise CheckFailed(f"no {_what(options.type)} matches {options.glob}")
            out.add(OLDEST, found.oldest)
        else:
            assert options.path is not None  # parse guarantees path or glob
            found = await self._off_loop.run(
                _stat_path, options.path, options.type, options.max_entries
            )
            out.add(MATCHES, found.matches)
            if found.matches == 0:
                raise CheckFailed(found.problem or f"{options.path} does not exist")
        out.add(FRESHNESS, found.mtime, item=options.item)
        out.add(SIZE, found.size)


KIND = Kind(
    name="file",
    summary="Freshness (mtime) and size of a file or directory, or of the newest one "
    "matching a glob.",
    parse=parse,
    probe=FileProbe,
    families=(FRESHNESS, SIZE, MATCHES, OLDEST),
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
                "The path does not exist or the glob matches nothing of the check's type "
                "(regular files unless type says otherwise): the job "
                "that writes it never ran, wrote elsewhere, or its files were pruned."
            ),
            steps=(
                "List the directory; compare with the check's path or glob.",
                "Run the job that writes the file, or fix the pattern in the config.",
            ),
            reads="file_matches{$sel}",
            test=(TestInput("file_matches{$sel}", "gauge", "threshold + 1", "threshold"),),
        ),
        dropped(
            "file_size_bytes{$sel}",
            threshold=0.5,
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
        DefaultAlert(
            key="retention",
            name="RetentionExceeded",
            query="time() - file_oldest_timestamp_seconds{$sel}",
            op=">",
            threshold=None,
            unit="seconds",
            for_=3600.0,
            severity="info",
            summary="the oldest match of {{ $labels.check }} is {value} old "
            "(retention {threshold})",
            description=(
                "Pruning stopped: entries older than the retention are still there (the "
                "cleanup step failed or was removed), so the volume keeps filling."
            ),
            steps=(
                "List the matches oldest first (ls -ltr) and read the cleanup step's log.",
                "Run the cleanup by hand, then fix it in the backup script or cron.",
            ),
            reads="file_oldest_timestamp_seconds{$sel}",
            test=(
                TestInput(
                    "file_oldest_timestamp_seconds{$sel}", "age", "threshold", "threshold * 1.01"
                ),
            ),
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
