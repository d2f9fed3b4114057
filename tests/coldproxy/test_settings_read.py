"""No dead settings: every field of the settings classes is read by some code besides its own declaration (an
attribute access, or its name as a string for ``getattr`` / a dict of overrides). A field nothing reads is a
promise the code does not keep."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from coldproxy.config import BundleSettings, ServiceSettings, TrainSettings

ROOT = Path(__file__).resolve().parents[2]
CODE = ("coldproxy", "coldproxy_cli", "models", "export", "service")


@pytest.fixture(scope="module")
def code() -> str:
    text = []
    for package in CODE:
        for path in sorted((ROOT / package).rglob("*.py")):
            # declarations ("name: type = Field(...)") do not count as reads
            text += [line for line in path.read_text().splitlines() if not re.match(r"\s+\w+: .*=", line)
                     or "self." in line]
    return "\n".join(text)


@pytest.mark.parametrize("cls", [TrainSettings, BundleSettings, ServiceSettings])
def test_every_setting_is_read(cls, code):
    assert [n for n in cls.model_fields if not re.search(rf"\.{n}\b|[\"']{n}[\"']", code)] == []
