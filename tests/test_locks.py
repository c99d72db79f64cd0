"""The hash-locked environments (requirements/*.lock) agree with what the package declares.

The oracle is `packaging`, the library pip itself uses to read requirement specifiers: a lock
that pins a version outside the range pyproject.toml declares, misses a declared dependency
or carries a pin without a hash fails here instead of on a new machine.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
PIN = re.compile(r"^([A-Za-z0-9._-]+)==([^ ;\\]+)(?:\s*;\s*([^\\]+?))?\s*\\?$")


def pins(lock: str) -> dict[str, str]:
    """name → version of every pin in a lock that applies to this interpreter and platform."""
    found: dict[str, str] = {}
    lines = (REPO / "requirements" / lock).read_text().splitlines()
    for number, line in enumerate(lines):
        match = PIN.match(line)
        if not match:
            continue
        name, version, marker = match.groups()
        following = lines[number + 1] if number + 1 < len(lines) else ""
        assert following.strip().startswith("--hash=sha256:"), f"{lock}: {name} has no hash"
        applies = Requirement(f"{name}; {marker}").marker if marker else None
        if applies is not None and not applies.evaluate():
            continue
        found[canonicalize_name(name)] = version
    return found


def declared(*extras: str) -> list[Requirement]:
    """The project's dependencies plus those of the given extras, extras expanded."""
    wanted = [Requirement(text) for text in PROJECT["dependencies"]]
    for extra in extras:
        for text in PROJECT["optional-dependencies"][extra]:
            requirement = Requirement(text)
            if canonicalize_name(requirement.name) == canonicalize_name(PROJECT["name"]):
                wanted += declared(*requirement.extras)[len(PROJECT["dependencies"]) :]
            else:
                wanted.append(requirement)
    return wanted


@pytest.mark.parametrize(
    ("lock", "extras"), [("test.lock", ("test", "bench")), ("image.lock", ("pgbouncer",))]
)
def test_every_declared_dependency_is_pinned_inside_its_range(
    lock: str, extras: tuple[str, ...]
) -> None:
    locked = pins(lock)
    for requirement in declared(*extras):
        if requirement.marker and not requirement.marker.evaluate():
            continue
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{lock}: {requirement} is declared but not locked (scripts/lock.sh)"
        assert requirement.specifier.contains(locked[name], prereleases=True), (
            f"{lock}: {name}=={locked[name]} is outside the declared {requirement} "
            "(run scripts/lock.sh)"
        )
    # The build backend is locked too: installs run with --no-build-isolation.
    assert "setuptools" in locked


@pytest.mark.parametrize("side", ["bullmq-v5", "bullmq-v6"])
def test_side_venv_locks_pin_the_bullmq_major_their_input_asks_for(side: str) -> None:
    wanted = Requirement((REPO / "requirements" / f"{side}.in").read_text().strip())
    version = pins(f"{side}.lock")["bullmq"]
    assert wanted.specifier.contains(version), f"{side}.lock: bullmq=={version} vs {wanted}"


def test_the_installed_version_is_the_one_the_package_declares() -> None:
    """pyproject.toml reads the version from exporter/__init__.py (one place)."""
    from importlib.metadata import version

    import exporter

    assert version(PROJECT["name"]) == exporter.__version__
    assert PROJECT["dynamic"] == ["version"]
