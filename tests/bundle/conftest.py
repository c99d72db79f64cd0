"""Fixtures of the bundle tests: the committed profiles and one fresh generation."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.bundle.generate import generate
from exporter.bundle.profile import Profile, load_profiles
from tests.db.conftest import pg_cluster  # noqa: F401 (a real PostgreSQL for profile SQL)
from tests.web.conftest import serve  # noqa: F401 (loopback aiohttp servers)

ROOT = Path(__file__).resolve().parents[2]
PROFILES = ROOT / "profiles"


@pytest.fixture(scope="session")
def profiles() -> list[Profile]:
    return load_profiles(PROFILES)


@pytest.fixture(scope="session")
def generated(profiles: list[Profile]) -> dict[str, str]:
    """One fresh generation, ``{relative path: text}``, shared by every test."""
    return generate(profiles)


@pytest.fixture(scope="session")
def bundle(generated: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fresh generation written to a temporary directory."""
    out = tmp_path_factory.mktemp("bundle")
    for relative, text in generated.items():
        path = out / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return out
