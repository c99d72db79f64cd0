"""Generated documentation stays in step with the code."""

from pathlib import Path

from exporter.checks import KINDS
from exporter.metricsdoc import TARGET, render

ROOT = Path(__file__).resolve().parents[1]


def test_metrics_reference_is_generated_from_the_kinds() -> None:
    committed = (ROOT / TARGET).read_text(encoding="utf-8")
    assert committed == render(), "docs/metrics.md is stale: run python -m exporter.metricsdoc"


def test_every_kind_has_a_reference_page_linked_from_the_readme() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for name in KINDS:
        assert (ROOT / "docs" / "kinds" / f"{name}.md").is_file(), name
        assert f"(docs/kinds/{name}.md)" in readme, name
