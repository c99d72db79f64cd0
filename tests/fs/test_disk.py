"""The disk kind on real filesystems: a small tmpfs mounted by the test (CI runs as root),
else a plain directory on the filesystem the tests already use."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from exporter.checks import KINDS
from exporter.checks.base import CheckFailed
from exporter.checks.disk import mountpoint_of
from exporter.config import load_data
from exporter.samples import Sink
from tests.support import MountTmpfs, async_wait_until, config_problems, run_check, value, values

MIB = 1024 * 1024


def walk_up_to_mount(path: Path) -> str:
    """The mount point found the slow way, independently of /proc/self/mountinfo."""
    current = os.path.realpath(path)
    while not os.path.ismount(current):
        current = os.path.dirname(current)
    return current


def statvfs_numbers(path: Path) -> dict[str, float]:
    st = os.statvfs(path)
    return {
        "disk_size_bytes": st.f_blocks * st.f_frsize,
        "disk_free_bytes": st.f_bfree * st.f_frsize,
        "disk_avail_bytes": st.f_bavail * st.f_frsize,
        "disk_inodes": st.f_files,
        "disk_inodes_free": st.f_ffree,
        "disk_readonly": 1 if st.f_flag & os.ST_RDONLY else 0,
    }


async def test_tmpfs_numbers_equal_statvfs(tmpfs_mounts: MountTmpfs) -> None:
    fs = tmpfs_mounts()
    (fs / "exports").mkdir()
    (fs / "exports" / "latest.json").write_bytes(b"x" * MIB)
    result = await run_check(
        {"name": "data", "kind": "disk", "path": [str(fs), str(fs / "exports")]}
    )
    assert result.success, result.error
    expected = statvfs_numbers(fs)
    assert expected["disk_size_bytes"] == 4 * MIB
    assert expected["disk_inodes"] == 2000
    for path in (fs, fs / "exports"):
        labels = {"path": str(path), "mountpoint": str(fs)}
        for family, number in expected.items():
            assert value(result, family, **labels) == number, (family, path)
    # One megabyte written shows as used: free is at most 3 MiB of the 4.
    assert value(result, "disk_avail_bytes", path=str(fs), mountpoint=str(fs)) <= 3 * MIB


async def test_read_only_filesystem_is_flagged(tmpfs_mounts: MountTmpfs) -> None:
    writable = tmpfs_mounts("rw")
    read_only = tmpfs_mounts("ro", "size=1m,ro")
    result = await run_check({"name": "d", "kind": "disk", "path": [str(writable), str(read_only)]})
    assert result.success, result.error
    assert value(result, "disk_readonly", path=str(writable), mountpoint=str(writable)) == 0
    assert value(result, "disk_readonly", path=str(read_only), mountpoint=str(read_only)) == 1


async def test_mount_point_with_a_space_is_read_from_mountinfo(tmpfs_mounts: MountTmpfs) -> None:
    fs = tmpfs_mounts("data volume")
    result = await run_check({"name": "d", "kind": "disk", "path": str(fs)})
    assert result.success, result.error
    assert value(result, "disk_size_bytes", path=str(fs), mountpoint=str(fs)) == 4 * MIB


async def test_plain_directory_on_the_existing_filesystem(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    result = await run_check({"name": "d", "kind": "disk", "path": str(data)})
    assert result.success, result.error
    mount = walk_up_to_mount(data)
    labels = {"path": str(data), "mountpoint": mount}
    expected = statvfs_numbers(data)
    # Others may write to this filesystem meanwhile: totals are exact, free counts close.
    for family in ("disk_size_bytes", "disk_inodes", "disk_readonly"):
        assert value(result, family, **labels) == expected[family], family
    for family in ("disk_free_bytes", "disk_avail_bytes", "disk_inodes_free"):
        assert abs(value(result, family, **labels) - expected[family]) <= 0.01 * max(
            expected["disk_size_bytes"], expected["disk_inodes"]
        ), family


def test_mountpoint_lookup_prefers_the_longest_listed_prefix() -> None:
    mounts = ["/", "/var", "/var/lib/engine", "/var/lib/engine-old"]
    assert mountpoint_of("/var/lib/engine/data", mounts) == "/var/lib/engine"
    assert mountpoint_of("/var/lib/engine", mounts) == "/var/lib/engine"
    assert mountpoint_of("/var/lib/engineering", mounts) == "/var"
    assert mountpoint_of("/srv", mounts) == "/"


async def test_missing_path_fails_but_the_others_are_still_reported(tmp_path: Path) -> None:
    missing = tmp_path / "exports"
    result = await run_check({"name": "d", "kind": "disk", "path": [str(tmp_path), str(missing)]})
    assert not result.success
    assert result.error == f"{missing} does not exist"
    sizes = values(result, "disk_size_bytes")
    assert list(sizes) == [(("path", str(tmp_path)), ("mountpoint", walk_up_to_mount(tmp_path)))]


@pytest.mark.parametrize(
    ("options", "problems"),
    [
        ({}, ["checks[0].path: required but missing"]),
        ({"path": "data"}, ['checks[0].path: expected an absolute path, got "data"']),
        ({"path": []}, ["checks[0].path: expected at least one path"]),
        ({"path": ["/", 3]}, ["checks[0].path: expected a list of strings, got a list"]),
    ],
)
def test_bad_options_are_reported_with_their_path(
    options: dict[str, Any], problems: list[str]
) -> None:
    assert config_problems({"name": "d", "kind": "disk", **options}) == problems


async def test_hung_statvfs_is_not_started_again_while_it_blocks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hung NFS mount cannot be made here: os.statvfs is replaced by a call that blocks
    until the test releases it, which is what the kernel does on such a mount."""
    release = threading.Event()
    calls: list[str] = []
    real_statvfs = os.statvfs

    def hung_statvfs(path: Any) -> os.statvfs_result:
        calls.append(str(path))
        release.wait(60)
        return real_statvfs(path)

    monkeypatch.setattr("exporter.checks.disk.os.statvfs", hung_statvfs)
    spec = load_data(
        {"checks": [{"name": "d", "kind": "disk", "path": str(tmp_path), "timeout": "1s"}]},
        "<test>",
        {},
    ).checks[0]
    probe = KINDS["disk"].probe(spec)
    try:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.5):
                await probe.collect(Sink("d", ()))
        for _ in range(3):
            with pytest.raises(CheckFailed, match=r"still blocked in the call started \d+s ago"):
                await probe.collect(Sink("d", ()))
        assert calls == [str(tmp_path)]  # one thread stuck, not one per scrape
    finally:
        release.set()

    async def collects() -> bool:
        sink = Sink("d", ())
        try:
            await probe.collect(sink)
        except CheckFailed:
            return False  # still blocked: the released thread has not returned yet
        return any(s.family.name == "disk_size_bytes" for s in sink.samples)

    # Once the stuck call returns, the next scrape runs normally.
    await async_wait_until(collects, what="disk probe usable again")
    assert len(calls) >= 2  # the stuck call, then the run that reported
