"""Every default the earlier decision rule adopted, re-decided by the rule with a floor (issue 57, item 2) on the pairs
it was adopted on: the served model's validation-cold NDCG@20 per seed in the quality runs ``docs/ablations.md``
compares (the value adopted against the one before it; the bundle prior's stage-1 tune NDCG@20). Where a pair does not
clear the floor, ``bench/decide_defaults.py --today`` (MovieLens) or ``bench/decide_bundle_served.py`` (the bundle
model) re-decides it under today's defaults: the rule is in their docstrings and in ``docs/ablations.md``.

    python bench/redecide_defaults.py   # -> bench/results/redecide_defaults.{json,md}
"""

from __future__ import annotations

import json

from results_dir import RESULTS

from models.decision import clears

# setting: (value adopted, the quality run that adopted it, value before, the run it was compared with)
ITEM_PAIRS = {
    "id_model": ("lightgcn", "quality_movielens_lightgcn", "mf", "quality_movielens_linear_experts"),
    "id_epochs": (200, "quality_movielens_id_epochs", 60, "quality_movielens_lightgcn"),
    "proxy_fusion_temperatures": (
        "chosen on validation",
        "quality_movielens_fusion_temperature",
        "1.0",
        "quality_movielens_id_epochs",
    ),
    "generator_seeds": (3, "quality_movielens_generator_seeds", 1, "quality_movielens_fusion_temperature"),
    "id_batch": (1024, "quality_movielens_id_batch1024", 2048, "quality_movielens_generator_seeds"),
}


def served_validation(name: str) -> list[float]:
    """The served choice's validation-cold NDCG@20 of each seed of a quality run."""
    runs = json.loads((RESULTS / f"{name}.json").read_text())["per_seed"]
    return [r["_choices"]["selection"]["validation"][r["_choices"]["selection"]["served"]] for r in runs]


def main() -> None:
    out = {}
    for setting, (adopted, run, before, base_run) in ITEM_PAIRS.items():
        verdict = clears(served_validation(base_run), served_validation(run))
        out[setting] = {"adopted": adopted, "before": before, "runs": [run, base_run], **verdict}
    backbone = json.loads((RESULTS / "bundle_backbone.json").read_text())
    out |= backbone_pairs(backbone)
    (RESULTS / "redecide_defaults.json").write_text(json.dumps(out, indent=2))
    lines = [
        "Defaults the earlier rule adopted, on the pairs they were adopted on, by the rule with a floor "
        "(`python bench/redecide_defaults.py`; `models/decision.py`). Gain: the adopted value's validation "
        "NDCG@20 minus the earlier value's, per seed.",
        "",
        "| setting | adopted | before | gain per seed | floor | clears |",
        "|---|---|---|---|---|---|",
    ]
    for setting, r in out.items():
        gain = " / ".join(f"{g:+.4f}" for g in r["gain"])
        lines.append(
            f"| `{setting}` | {r['adopted']} | {r['before']} | {gain} | {r['floor']:.4f} | "
            f"{'yes' if r['adopt'] else '**no**: re-decided under today' + chr(39) + 's defaults'} |"
        )
    (RESULTS / "redecide_defaults.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


BACKBONE = "CrossCBR as published (its settings + Xavier, weight decay, no item BPR, contrast 0.04 averaged)"
# setting: (value adopted, its bundle_backbone.json variant, value before, that value's variant)
BUNDLE_PAIRS = {
    "bundle prior (COLDPROXY_BUNDLES_*)": (
        "CrossCBR's",
        BACKBONE,
        "2 layers, lr 5e-3, mean of layers",
        "before (2 layers, lr 5e-3, mean of layers, a user table per view)",
    ),
    "bpr_negatives (bundles)": (4, "  with 4 negatives per triple", 1, BACKBONE),
}


def backbone_pairs(backbone: dict) -> dict:
    """The bundle prior's settings on stage 1's warm tune NDCG@20 per seed (``bench/bundle_backbone.py``)."""
    v = backbone["warm"]["variants"]
    return {
        setting: {"adopted": adopted, "before": before, "runs": ["bundle_backbone"]}
        | clears(v[base]["tune_ndcg@20"], v[run]["tune_ndcg@20"])
        for setting, (adopted, run, before, base) in BUNDLE_PAIRS.items()
    }


if __name__ == "__main__":
    main()
