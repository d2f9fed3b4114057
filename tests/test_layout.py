"""The house rules, as tests: the import-linter contracts of pyproject.toml (layers), a short app
factory, ruff finding nothing and its formatter changing nothing, and no source file over 400 lines."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("coldproxy", "coldproxy_cli", "models", "export", "service", "loadtest", "bench", "tests")


def test_import_contracts_hold():
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run(
        [str(lint), "--config", str(ROOT / "pyproject.toml")], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def test_create_app_is_short():
    tree = ast.parse((ROOT / "service" / "app.py").read_text())
    (fn,) = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "create_app"]
    assert fn.end_lineno - fn.lineno + 1 < 60


def test_ruff_finds_nothing():
    """pyflakes, pycodestyle and isort over the whole project ([tool.ruff] in pyproject.toml)."""
    run = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", str(ROOT)], capture_output=True, text=True, cwd=ROOT
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-1000:]


def test_ruff_format_changes_nothing():
    """``ruff format`` (the version pinned in pyproject.toml) was applied to the whole project once; every change
    since keeps to it. Run ``ruff format .`` before committing."""
    run = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--check", "--no-cache", str(ROOT)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-1000:]


def test_no_source_file_over_400_lines():
    long = {
        str(p.relative_to(ROOT)): n
        for pkg in PACKAGES
        for p in (ROOT / pkg).rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 400
    }
    assert not long, long


def test_domain_code_raises_no_http_exceptions():
    """One error vocabulary: below the routers, failures are ``coldproxy.errors`` types."""
    offenders = [
        str(p.relative_to(ROOT))
        for pkg in ("coldproxy", "service", "models", "export")
        for p in (ROOT / pkg).rglob("*.py")
        if "HTTPException(" in p.read_text()
    ]
    assert not offenders, offenders
