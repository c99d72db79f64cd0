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


def _markdown_files() -> list[Path]:
    skip = {".venv", ".cache", ".git", "node_modules"}
    return sorted(
        path for path in ROOT.rglob("*.md") if not skip.intersection(path.relative_to(ROOT).parts)
    )


def test_every_relative_link_in_the_docs_resolves_inside_the_clone() -> None:
    """A plain clone (no ../shared beside it) has every file a README or doc links to."""
    import re

    link = re.compile(r"\]\(([^)\s]+)\)")
    broken = []
    for page in _markdown_files():
        for target in link.findall(page.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue  # an absolute URL, or an anchor on the same page
            resolved = (page.parent / target.split("#", 1)[0]).resolve()
            inside = resolved.is_relative_to(ROOT)
            if not inside or not resolved.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}")
    assert broken == []
