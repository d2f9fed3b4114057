"""The documentation holds: the site builds with ``mkdocs build --strict`` (a broken link or a page left out of the
navigation fails), the configuration reference is what the settings generate, the layout names every module, every
setting says what it does, and the README stays a front door."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from coldproxy.config import BundleSettings, ServiceSettings, TrainSettings
from coldproxy.settings_reference import render

ROOT = Path(__file__).resolve().parents[1]


def test_the_site_builds_strictly(tmp_path):
    pytest.importorskip("mkdocs", reason="mkdocs-material comes with the test extra")
    run = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"NO_MKDOCS_2_WARNING": "1", "PATH": ""},
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert (tmp_path / "site" / "configuration" / "index.html").exists()


def test_the_configuration_page_is_what_the_settings_generate():
    assert (ROOT / "docs" / "configuration.md").read_text() == render(), (
        "docs/configuration.md is out of date: python -m coldproxy.settings_reference > docs/configuration.md"
    )


def test_the_layout_names_every_module_by_its_docstring():
    """docs/development.md's layout is generated from the modules' docstrings (scripts/layout.py): a module added,
    moved or re-described without regenerating it fails here (issue 58)."""
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "layout.py"), "--check"], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    page = (ROOT / "docs" / "development.md").read_text()
    for package in ("coldproxy", "coldproxy_cli", "models", "export", "service", "loadtest", "bench"):
        for path in (ROOT / package).rglob("*.py"):
            if path.name != "__init__.py" or path.read_text().strip():
                assert f"`{path.relative_to(ROOT).as_posix()}`" in page, path


@pytest.mark.parametrize("cls", [TrainSettings, BundleSettings, ServiceSettings])
def test_every_setting_says_what_it_does(cls):
    assert [n for n, f in cls.model_fields.items() if not (f.description or "").strip()] == []


def test_the_results_page_is_what_the_result_files_give():
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import report
    finally:
        sys.path.pop(0)
    assert (ROOT / "docs" / "results.md").read_text() == report.render(), (
        "docs/results.md is out of date: python bench/report.py"
    )
    readme = (ROOT / "README.md").read_text()
    assert readme == report.readme_with_block(readme), "the README's results are out of date: python bench/report.py"


def test_the_readme_is_a_front_door():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    assert "bash scripts/main.sh" in readme and "bash scripts/test.sh" in readme
    for link in re.findall(r"\]\((docs/[^)#]+)", readme):
        assert (ROOT / link).exists(), link


def test_no_work_log_wording_in_the_docs():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    found = [
        f"{p.name}: {m.group(0)}" for p in pages for m in re.finditer(r"\b[Ss]tops? \d+\b|stop-\d+", p.read_text())
    ]
    assert found == []


def test_every_result_file_is_read_or_cited():
    """A file under bench/results/ that no page names is a result nobody can find: cite it or remove it (git keeps
    it). The results page names what it reads, so this holds for every file the report uses too."""
    pages = "\n".join(p.read_text() for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))])
    stems = {p.name.split(".")[0] for p in (ROOT / "bench" / "results").glob("*") if p.suffix in (".json", ".md")}
    assert stems, "no result files"
    uncited = sorted(s for s in stems if not re.search(rf"(?<![\w-]){re.escape(s)}(?![\w-])", pages))
    assert uncited == [], uncited
