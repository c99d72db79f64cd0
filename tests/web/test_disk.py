"""The disk kind on real filesystems: a small tmpfs mounted by the test (CI runs as root),
else a plain directory on the filesystem the tests already use."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from exporter.checks.disk import mountpoint_of
from tests.support import config_problems, mount_tmpfs, run_check, value, values

MIB = 1024 * 1024
Mount = Callable[..., Path]


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Mount]:
    """Mount a real tmpfs under ``tmp_path`` (skips locally where mounting is refused)."""
    mounted: list[Path] = []

    def mount(name: str = "fs", options: str = "size=4m,nr_inodes=2000") -> Path:
        target = tmp_path / name
        target.mkdir()
        mount_tmpfs(target, options)
        mounted.append(target)
        return target

    yield mount
    for target in reversed(mounted):
        subprocess.run(["umount", str(target)], check=True)


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


async def test_tmpfs_numbers_equal_statvfs(tmpfs: Mount) -> None:
    fs = tmpfs()
    (fs / "exports").mkdir()
    (fs / "exports" / "latest.json").write_bytes(b"x" * MIB)
    result = await run_check({"name": "data", "kind": "disk",
                              "path": [str(fs), str(fs / "exports")]})
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


async def test_read_only_filesystem_is_flagged(tmpfs: Mount) -> None:
    writable = tmpfs("rw")
    read_only = tmpfs("ro", "size=1m,ro")
    result = await run_check({"name": "d", "kind": "disk",
                              "path": [str(writable), str(read_only)]})
    assert result.success, result.error
    assert value(result, "disk_readonly", path=str(writable), mountpoint=str(writable)) == 0
    assert value(result, "disk_readonly", path=str(read_only), mountpoint=str(read_only)) == 1


async def test_mount_point_with_a_space_is_read_from_mountinfo(tmpfs: Mount) -> None:
    fs = tmpfs("data volume")
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
    result = await run_check({"name": "d", "kind": "disk",
                              "path": [str(tmp_path), str(missing)]})
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
