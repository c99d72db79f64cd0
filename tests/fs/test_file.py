"""The file kind on real files: mtimes set with os.utime, globs over backup folders."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.support import config_problems, run_check, value, values

DAY = 86400.0
T0 = 1_795_000_000.0  # 2026-11-18


def write(path: Path, size: int, mtime: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    os.utime(path, (mtime, mtime))
    return path


async def test_path_reports_mtime_and_size(tmp_path: Path) -> None:
    latest = write(tmp_path / "exports" / "latest.json", 4321, T0 + 0.5)
    result = await run_check({"name": "export", "kind": "file", "path": str(latest)})
    assert result.success, result.error
    assert value(result, "freshness_timestamp_seconds", item=str(latest)) == T0 + 0.5
    assert value(result, "file_size_bytes") == 4321
    assert value(result, "file_matches") == 1
    assert values(result, "file_oldest_timestamp_seconds") == {}  # a glob's only


async def test_export_that_shrinks_and_ages_is_seen_on_the_next_run(tmp_path: Path) -> None:
    latest = write(tmp_path / "latest.json", 5000, T0)
    check = {"name": "export", "kind": "file", "path": str(latest), "item": "latest-export"}
    before = await run_check(check)
    write(latest, 100, T0 + DAY)
    after = await run_check(check)
    assert value(before, "file_size_bytes") == 5000
    assert value(after, "file_size_bytes") == 100
    assert value(after, "freshness_timestamp_seconds", item="latest-export") == T0 + DAY


async def test_missing_file_is_a_failure_not_a_zero(tmp_path: Path) -> None:
    missing = tmp_path / "exports" / "latest.json"
    result = await run_check({"name": "export", "kind": "file", "path": str(missing)})
    assert not result.success
    assert result.error == f"{missing} does not exist"
    assert value(result, "file_matches") == 0
    assert values(result, "file_size_bytes") == {}
    assert values(result, "freshness_timestamp_seconds") == {}


async def test_glob_picks_the_newest_backup_and_counts_matches(tmp_path: Path) -> None:
    backups = tmp_path / "backups" / "db"
    for day in range(1, 4):
        write(backups / f"smartcity_202611{day:02d}_020000.sql.gz", 1000 * day, T0 + day * DAY)
    # The newest by mtime wins, not the last by name (a restored old dump copied in today).
    write(backups / "smartcity_20261020_020000.sql.gz", 777, T0 + 10 * DAY)
    write(backups / "notes.txt", 5, T0 + 20 * DAY)  # does not match the pattern
    (backups / "smartcity_20261130_020000.sql.gz").mkdir()  # a directory is not a backup
    pattern = str(backups / "smartcity_*.sql.gz")
    result = await run_check(
        {"name": "backups", "kind": "file", "glob": pattern, "item": "nightly-backup"}
    )
    assert result.success, result.error
    assert value(result, "file_matches") == 4
    assert value(result, "file_size_bytes") == 777
    assert value(result, "freshness_timestamp_seconds", item="nightly-backup") == T0 + 10 * DAY
    # The oldest match, for retention ("keep 30 days"): not the notes, not the directory.
    assert value(result, "file_oldest_timestamp_seconds") == T0 + DAY


async def test_recursive_glob(tmp_path: Path) -> None:
    write(tmp_path / "2026-11-20" / "engine.sqlite", 10, T0)
    write(tmp_path / "2026-11-21" / "engine.sqlite", 20, T0 + DAY)
    pattern = str(tmp_path / "**" / "engine.sqlite")
    result = await run_check({"name": "b", "kind": "file", "glob": pattern})
    assert result.success, result.error
    assert value(result, "file_matches") == 2
    assert value(result, "freshness_timestamp_seconds", item=pattern) == T0 + DAY


async def test_glob_without_matches_fails_and_counts_zero(tmp_path: Path) -> None:
    write(tmp_path / "other.sql.gz", 1, T0)
    pattern = str(tmp_path / "smartcity_*.sql.gz")
    result = await run_check({"name": "backups", "kind": "file", "glob": pattern})
    assert not result.success
    assert result.error == f"no regular file matches {pattern}"
    assert value(result, "file_matches") == 0
    assert values(result, "file_size_bytes") == {}
    assert values(result, "file_oldest_timestamp_seconds") == {}


@pytest.mark.parametrize(
    ("options", "problems"),
    [
        ({}, ["checks[0]: set path (one file) or glob (the newest matching file)"]),
        ({"path": "/a", "glob": "/b/*"}, ["checks[0].glob: set either path or glob, not both"]),
        (
            {"path": "/backups/*.gz"},
            ['checks[0].path: "/backups/*.gz" contains wildcards: use glob for a pattern'],
        ),
        ({"path": ""}, ["checks[0].path: must not be empty"]),
        ({"glob": ["/a"]}, ["checks[0].glob: expected a string, got a list"]),
    ],
)
def test_bad_options_are_reported_with_their_path(
    options: dict[str, Any], problems: list[str]
) -> None:
    assert config_problems({"name": "f", "kind": "file", **options}) == problems


def backup_dir(root: Path, name: str, files: dict[str, int], mtime: float) -> Path:
    """A backup as rta-cctv's backup.sh writes it: a dated directory of dumps."""
    folder = root / name
    for relative, size in files.items():
        write(folder / relative, size, mtime)
    os.utime(folder, (mtime, mtime))
    return folder


async def test_directory_backups_newest_by_mtime_sized_by_their_files(tmp_path: Path) -> None:
    root = tmp_path / "rta-cctv"
    backup_dir(root, "20250123_020000", {"postgres.sql.gz": 900}, T0)
    newest = backup_dir(
        root,
        "20250124_020000",
        {"postgres.sql.gz": 1000, "grafana/grafana.db": 200, "loki/index/x": 30},
        T0 + DAY,
    )
    # A symlink to a big file outside is not part of the backup's bytes.
    write(tmp_path / "elsewhere" / "big", 10_000, T0)
    (newest / "link").symlink_to(tmp_path / "elsewhere" / "big")
    os.utime(newest, (T0 + DAY, T0 + DAY))
    write(root / "backup.log", 5, T0 + 2 * DAY)  # a regular file: not a backup here
    pattern = str(root / "*")
    check = {"name": "backup", "kind": "file", "glob": pattern, "type": "directory"}
    result = await run_check(check)
    assert result.success, result.error
    assert value(result, "file_matches") == 2
    assert value(result, "freshness_timestamp_seconds", item=pattern) == T0 + DAY
    assert value(result, "file_size_bytes") == 1230
    # The default type still counts regular files only: the log is the one match.
    files = await run_check({**check, "type": "file"})
    assert value(files, "file_matches") == 1
    assert value(files, "file_size_bytes") == 5
    both = await run_check({**check, "type": "any"})
    assert value(both, "file_matches") == 3
    assert value(both, "freshness_timestamp_seconds", item=pattern) == T0 + 2 * DAY
    assert value(both, "file_oldest_timestamp_seconds") == T0


async def test_directory_glob_without_directories_fails_and_counts_zero(tmp_path: Path) -> None:
    write(tmp_path / "backup.tar.gz", 5, T0)
    pattern = str(tmp_path / "*")
    result = await run_check(
        {"name": "backup", "kind": "file", "glob": pattern, "type": "directory"}
    )
    assert not result.success
    assert result.error == f"no directory matches {pattern}"
    assert value(result, "file_matches") == 0


async def test_path_of_the_wrong_type_is_a_failure_with_a_reason(tmp_path: Path) -> None:
    folder = backup_dir(tmp_path, "20250124_020000", {"a": 7}, T0)
    as_file = await run_check({"name": "f", "kind": "file", "path": str(folder)})
    assert not as_file.success
    assert as_file.error == f"{folder} is not a regular file"
    assert value(as_file, "file_matches") == 0
    as_dir = await run_check(
        {"name": "f", "kind": "file", "path": str(folder), "type": "directory"}
    )
    assert as_dir.success, as_dir.error
    assert value(as_dir, "file_size_bytes") == 7
    assert value(as_dir, "freshness_timestamp_seconds", item=str(folder)) == T0


async def test_directory_walk_is_bounded_by_max_entries(tmp_path: Path) -> None:
    folder = backup_dir(tmp_path, "b", {f"part{n}": 1 for n in range(5)}, T0)
    check = {"name": "f", "kind": "file", "path": str(folder), "type": "directory"}
    within = await run_check({**check, "max_entries": 5})
    assert within.success, within.error
    assert value(within, "file_size_bytes") == 5
    beyond = await run_check({**check, "max_entries": 4})
    assert not beyond.success
    assert beyond.error == (
        f"more than 4 entries under {folder}: raise max_entries or watch a file inside it"
    )


@pytest.mark.parametrize(
    ("options", "problems"),
    [
        (
            {"glob": "/b/*", "type": "dir"},
            ['checks[0].type: expected one of file, directory, any, got "dir"'],
        ),
        ({"glob": "/b/*", "max_entries": 0}, ["checks[0].max_entries: must be at least 1, got 0"]),
    ],
)
def test_bad_type_options_are_reported_with_their_path(
    options: dict[str, Any], problems: list[str]
) -> None:
    assert config_problems({"name": "f", "kind": "file", **options}) == problems
