"""The standard ``process_*`` metrics of the exporter's own process, read from /proc.

Same names, types, help and meaning as prometheus_client's ProcessCollector (the test
compares the two), written here so a text-format scrape needs no prometheus_client: its
package import alone costs a serving exporter about 1 MiB and pulls in http.server and
wsgiref. Off Linux (no /proc) there are no process metrics, as with prometheus_client.
"""

from __future__ import annotations

import os
import resource

from exporter.samples import Family, Sample

VIRTUAL_MEMORY = Family("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.")
RESIDENT_MEMORY = Family("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.")
START_TIME = Family(
    "process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds."
)
CPU_SECONDS = Family(
    "process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds."
)
OPEN_FDS = Family("process_open_fds", "gauge", "Number of open file descriptors.")
MAX_FDS = Family("process_max_fds", "gauge", "Maximum number of open file descriptors.")
FAMILIES = (VIRTUAL_MEMORY, RESIDENT_MEMORY, START_TIME, CPU_SECONDS, OPEN_FDS, MAX_FDS)

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE = resource.getpagesize()


def _boot_time() -> float | None:
    try:
        with open("/proc/stat", "rb") as stat:
            for line in stat:
                if line.startswith(b"btime "):
                    return float(line.split()[1])
    except OSError:
        pass
    return None


_BOOT = _boot_time()


def process_samples() -> list[Sample]:
    """The six process families now; none when /proc cannot be read."""
    try:
        with open("/proc/self/stat", "rb") as stat:
            # The command name (field 2) may hold spaces and parentheses: split after it.
            fields = stat.read().rsplit(b")", 1)[1].split()
        open_fds = len(os.listdir("/proc/self/fd"))
    except (OSError, IndexError):
        return []
    # fields[0] is field 3 of proc(5): utime is field 14, stime 15, starttime 22, vsize 23,
    # rss 24 (in pages).
    utime, stime = int(fields[11]), int(fields[12])
    samples = [
        Sample(VIRTUAL_MEMORY, (), float(fields[20])),
        Sample(RESIDENT_MEMORY, (), float(int(fields[21]) * _PAGE)),
    ]
    if _BOOT is not None:
        samples.append(Sample(START_TIME, (), int(fields[19]) / _TICKS + _BOOT))
    samples += [
        Sample(CPU_SECONDS, (), (utime + stime) / _TICKS),
        Sample(OPEN_FDS, (), float(open_fds)),
        Sample(MAX_FDS, (), float(resource.getrlimit(resource.RLIMIT_NOFILE)[0])),
    ]
    return samples
