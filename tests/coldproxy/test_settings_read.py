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
            text += [
                line for line in path.read_text().splitlines() if not re.match(r"\s+\w+: .*=", line) or "self." in line
            ]
    return "\n".join(text)


@pytest.mark.parametrize("cls", [TrainSettings, BundleSettings, ServiceSettings])
def test_every_setting_is_read(cls, code):
    assert [n for n in cls.model_fields if not re.search(rf"\.{n}\b|[\"']{n}[\"']", code)] == []


BUNDLE_CODE = (
    "models/bundles",
    "export/bundle_package.py",
    "models/diffusion.py",
    "models/samplers.py",
    "models/training.py",
    "coldproxy_cli",
    "coldproxy/package.py",
)


def test_the_bundle_settings_hold_only_what_the_bundle_code_reads():
    """``BundleSettings`` no longer inherits the item model's settings: each of its fields is read by the bundle
    training, its package or the CLI that starts them (issue 42)."""
    text = []
    for entry in BUNDLE_CODE:
        path = ROOT / entry
        for p in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            text += [line for line in p.read_text().splitlines() if not re.match(r"\s+\w+: .*=", line)]
    code = "\n".join(text)
    assert [n for n in BundleSettings.model_fields if not re.search(rf"\.{n}\b|[\"']{n}[\"']", code)] == []
    assert not {"proxy_epochs", "id_model", "text_finetune", "select_modalities"} & set(BundleSettings.model_fields)


def test_the_bundle_item_level_defaults_follow_the_scenario_and_a_setting_wins(monkeypatch):
    """``item_pooling`` and ``item_bpr_weight`` unset: each scenario's default, chosen on its tune split (issue 56);
    set, by keyword or environment, they are what the user said in every scenario."""
    from coldproxy.config.bundles import ITEM_LEVEL_DEFAULTS

    for scenario in ("cold", "warm", "all"):
        s = BundleSettings(scenario=scenario)
        assert (s.item_pooling, s.item_bpr_weight) == (
            ITEM_LEVEL_DEFAULTS["item_pooling"][scenario],
            ITEM_LEVEL_DEFAULTS["item_bpr_weight"][scenario],
        )
    assert BundleSettings(scenario="all").item_pooling == 1.0 and BundleSettings(scenario="cold").item_pooling == 0.5
    monkeypatch.setenv("COLDPROXY_BUNDLES_ITEM_POOLING", "0.7")
    assert BundleSettings(scenario="cold").item_pooling == 0.7 == BundleSettings(scenario="warm").item_pooling
    assert BundleSettings(scenario="cold", item_bpr_weight=0.0).item_bpr_weight == 0.0
