"""``disk``: bytes and inodes of the filesystem holding each configured path (statvfs).

Every sample carries the configured ``path`` and the ``mountpoint`` it lives on, so that
two paths on one volume are recognisable as one volume in dashboards.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from exporter.alerting import DefaultAlert, Panel, TestInput
from exporter.checks._blocking import OffLoop
from exporter.checks.base import BaseProbe, CheckFailed, CheckSpec, Kind
from exporter.fields import Reader
from exporter.samples import Family, Sink

MOUNTINFO = "/proc/self/mountinfo"
_LABELS = ("path", "mountpoint")

SIZE = Family("disk_size_bytes", "gauge", "Size of the filesystem.", _LABELS)
FREE = Family(
    "disk_free_bytes", "gauge", "Free bytes of the filesystem, including root-reserved.", _LABELS
)
AVAIL = Family(
    "disk_avail_bytes",
    "gauge",
    "Bytes of the filesystem available to unprivileged users.",
    _LABELS,
)
INODES = Family("disk_inodes", "gauge", "Inodes of the filesystem.", _LABELS)
INODES_FREE = Family("disk_inodes_free", "gauge", "Free inodes of the filesystem.", _LABELS)
READONLY = Family("disk_readonly", "gauge", "1 when the filesystem is mounted read-only.", _LABELS)


@dataclass(frozen=True)
class DiskOptions:
    paths: tuple[str, ...]


@dataclass(frozen=True)
class _Usage:
    path: str
    mountpoint: str
    stats: os.statvfs_result


def parse(reader: Reader) -> DiskOptions:
    paths = reader.str_list("path")
    if reader.data.get("path") == []:
        reader.error("path", "expected at least one path")
    for index, path in enumerate(paths):
        if not path:
            reader.error("path", f"path {index + 1} is empty")
        elif not os.path.isabs(path):
            reader.error("path", f'expected an absolute path, got "{path}"')
    return DiskOptions(paths=tuple(dict.fromkeys(paths, True)))  # unique, in order


def _unescape(field: str) -> str:
    """Mount points in mountinfo escape space, tab, newline and backslash as octal."""
    if "\\" not in field:
        return field
    return (
        field.encode().decode("unicode_escape").encode("latin-1").decode("utf-8", errors="replace")
    )


def _mountpoints() -> list[str]:
    try:
        with open(MOUNTINFO, encoding="utf-8", errors="replace") as lines:
            return [_unescape(line.split(" ")[4]) for line in lines if line.count(" ") >= 5]
    except OSError:
        return []


def mountpoint_of(path: str, mountpoints: list[str]) -> str:
    """The mount point holding ``path``: the longest listed prefix, else walk up."""
    real = os.path.realpath(path)
    best = ""
    for mount in mountpoints:
        inside = real == mount or real.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) > len(best):
            best = mount
    if best:
        return best
    current = real
    while not os.path.ismount(current):
        current = os.path.dirname(current)
    return current


def _usage(paths: tuple[str, ...]) -> tuple[list[_Usage], list[str]]:
    mountpoints = _mountpoints()
    found: list[_Usage] = []
    problems: list[str] = []
    for path in paths:
        try:
            stats = os.statvfs(path)
        except FileNotFoundError:
            problems.append(f"{path} does not exist")
            continue
        except OSError as exc:
            problems.append(f"statvfs {path}: {exc.strerror or exc}")
            continue
        found.append(_Usage(path, mountpoint_of(path, mountpoints), stats))
    return found, problems


class DiskProbe(BaseProbe[DiskOptions]):
    def __init__(self, spec: CheckSpec[DiskOptions]) -> None:
        super().__init__(spec)
        # statvfs on a hung network mount blocks: keep it off the event loop.
        self._off_loop = OffLoop(f"statvfs {', '.join(spec.options.paths)}")

    async def collect(self, out: Sink) -> None:
        found, problems = await self._off_loop.run(_usage, self.options.paths)
        for usage in found:
            stats = usage.stats
            labels = {"path": usage.path, "mountpoint": usage.mountpoint}
            out.add(SIZE, stats.f_blocks * stats.f_frsize, **labels)
            out.add(FREE, stats.f_bfree * stats.f_frsize, **labels)
            out.add(AVAIL, stats.f_bavail * stats.f_frsize, **labels)
            out.add(INODES, stats.f_files, **labels)
            out.add(INODES_FREE, stats.f_ffree, **labels)
            out.add(READONLY, 1 if stats.f_flag & os.ST_RDONLY else 0, **labels)
        if problems:
            raise CheckFailed("; ".join(problems))


KIND = Kind(
    name="disk",
    summary="Size, free and available bytes and inodes of the filesystem holding each path.",
    parse=parse,
    probe=DiskProbe,
    families=(SIZE, FREE, AVAIL, INODES, INODES_FREE, READONLY),
    target="path",
    alerts=(
        DefaultAlert(
            key="space",
            name="DiskFull",
            query="1 - disk_avail_bytes{$sel} / disk_size_bytes{$sel}",
            op=">",
            threshold=0.9,
            unit="ratio",
            for_=600.0,
            severity="warning",
            summary="{{ $labels.mountpoint }} ({{ $labels.check }}) is {value} full "
            "(warn above {threshold})",
            description=(
                "Space available to unprivileged writers is running out; services "
                "writing there (databases, logs, backups) fail when it does."
            ),
            steps=(
                "Find what grew: du -xh --max-depth=2 on the mountpoint.",
                "Prune old backups or logs per their retention; grow the volume if the "
                "growth is real.",
            ),
            reads="disk_size_bytes{$sel}",
            test=(
                TestInput(
                    'disk_size_bytes{$sel,path="/d",mountpoint="/d"}', "gauge", "1000", "1000"
                ),
                TestInput(
                    'disk_avail_bytes{$sel,path="/d",mountpoint="/d"}',
                    "gauge",
                    "1000 - threshold * 1000",
                    "1000 - threshold * 1000 - 1",
                ),
            ),
            labels=(("path", "/d"), ("mountpoint", "/d")),
            value="(threshold * 1000 + 1) / 1000",
        ),
        DefaultAlert(
            key="inodes",
            name="InodesExhausted",
            query="1 - disk_inodes_free{$sel} / disk_inodes{$sel}",
            op=">",
            threshold=0.9,
            unit="ratio",
            for_=600.0,
            severity="warning",
            summary="{{ $labels.mountpoint }} ({{ $labels.check }}) has used {value} of "
            "its inodes (warn above {threshold})",
            description="With no inodes left no file can be created, whatever space is free.",
            steps=(
                "Find directories with many small files: find MOUNT -xdev -type d -size +1M.",
                "Clean up (session files, queue spools, thumbnails) or rebuild the "
                "filesystem with more inodes.",
            ),
            reads="disk_inodes{$sel}",
            test=(
                TestInput('disk_inodes{$sel,path="/d",mountpoint="/d"}', "gauge", "1000", "1000"),
                TestInput(
                    'disk_inodes_free{$sel,path="/d",mountpoint="/d"}',
                    "gauge",
                    "1000 - threshold * 1000",
                    "1000 - threshold * 1000 - 1",
                ),
            ),
            labels=(("path", "/d"), ("mountpoint", "/d")),
            value="(threshold * 1000 + 1) / 1000",
        ),
        DefaultAlert(
            key="readonly",
            name="ReadOnly",
            query="disk_readonly{$sel}",
            op=">",
            threshold=0,
            unit="bool",
            for_=120.0,
            severity="critical",
            summary="{{ $labels.mountpoint }} ({{ $labels.check }}) is mounted read-only",
            description=(
                "The kernel remounts a filesystem read-only after I/O errors: every "
                "write there fails."
            ),
            steps=("Read dmesg for I/O or filesystem errors; plan a fsck and a disk check.",),
            reads="disk_readonly{$sel}",
            test=(
                TestInput(
                    'disk_readonly{$sel,path="/d",mountpoint="/d"}',
                    "gauge",
                    "threshold",
                    "threshold + 1",
                ),
            ),
            labels=(("path", "/d"), ("mountpoint", "/d")),
        ),
        DefaultAlert(
            key="size_below",
            name="TooSmall",
            query="disk_size_bytes{$sel}",
            op="<",
            threshold=None,  # a runbook's minimum volume size, when it gives one
            unit="bytes",
            for_=600.0,
            severity="warning",
            summary="{{ $labels.mountpoint }} ({{ $labels.check }}) is {value}, smaller "
            "than the {threshold} required",
            description=(
                "The volume is smaller than required: a mount that failed (the path sits "
                "on the root filesystem instead), or a volume created too small."
            ),
            steps=("findmnt on the path; compare with the volume that should be mounted.",),
            reads="disk_size_bytes{$sel}",
            test=(
                TestInput(
                    'disk_size_bytes{$sel,path="/d",mountpoint="/d"}',
                    "gauge",
                    "threshold",
                    "threshold - 1",
                ),
            ),
            labels=(("path", "/d"), ("mountpoint", "/d")),
        ),
    ),
    panels=(
        Panel(
            "Disk used",
            '1 - disk_avail_bytes{check=~"$check"} / disk_size_bytes{check=~"$check"}',
            "ratio",
            "{{check}} {{mountpoint}}",
            thresholds="DiskFull",
        ),
        Panel(
            "Inodes used",
            '1 - disk_inodes_free{check=~"$check"} / disk_inodes{check=~"$check"}',
            "ratio",
            "{{check}} {{mountpoint}}",
        ),
    ),
)
