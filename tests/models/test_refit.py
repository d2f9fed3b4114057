"""Evaluate on a split, then serve a package refit on all the data (issue 55), on a small dataset in the generic
format with what a real catalogue has: interactions with weight <= 0 (seen, not positive), items whose only
interactions are those, and items nobody interacted with yet. Real files, a real server over HTTP, real Redis."""

from __future__ import annotations

import csv
import json

import httpx
import numpy as np
import pytest

from coldproxy.config import ServiceSettings, TrainSettings
from coldproxy.errors import PackageError
from coldproxy.package import load_package
from coldproxy_cli.commands import main as cli_main
from models.data import load_generic, load_movielens
from models.items.refit import check_settings
from tests.conftest import REDIS_URL, LiveServer, _free_port


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory, movielens_dir):
    """ML's 120 most popular movies as a generic catalogue: every 7th rating row weight 0 (seen, not positive), the
    last 4 movies rated with weight 0 only, and 6 more items nobody interacted with."""
    ml = load_movielens(movielens_dir).most_popular(120)
    data = tmp_path_factory.mktemp("refit") / "data"
    data.mkdir()
    with (data / "items.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["item_id", "text", "image"])
        for iid, text, img in zip(ml.item_ids, ml.item_texts, ml.item_images):
            w.writerow([f"sku-{iid}", text, str(img) if img is not None else ""])
        for n in range(6):
            w.writerow([f"new-{n}", f"A film nobody has seen yet, number {n}", ""])
    only_seen = set(ml.item_ids[-4:])
    with (data / "interactions.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["user_id", "item_id", "timestamp", "weight"])
        for row, (u, i) in enumerate(zip(ml.users, ml.items)):
            weight = 0 if row % 7 == 0 or ml.item_ids[i] in only_seen else 1
            w.writerow([f"user-{ml.user_ids[u]}", f"sku-{ml.item_ids[i]}", 0, weight])
    return data


def test_a_refit_refuses_settings_its_evaluation_did_not_choose_for(tmp_path):
    evaluated = TrainSettings(seed=3, refit=False)
    evaluation = {"settings": evaluated.model_dump(mode="json")}
    check_settings(TrainSettings(seed=3, work_dir=tmp_path, cache_dir=tmp_path), evaluation)  # places, refit: fine
    with pytest.raises(PackageError, match="proxy_hidden, seed"):
        check_settings(TrainSettings(seed=4, proxy_hidden=128), evaluation)
    with pytest.raises(PackageError, match="records no settings"):
        check_settings(evaluated, {})


@pytest.fixture(scope="module")
def refit_package(catalogue, train_settings, tmp_path_factory):
    """``coldproxy train`` (evaluation, then refit) and ``coldproxy export`` on the catalogue, briefly trained."""
    root = tmp_path_factory.mktemp("refit-run")
    env = {
        "COLDPROXY_CACHE_DIR": str(train_settings.cache_dir),
        "COLDPROXY_ID_EPOCHS": "10",
        "COLDPROXY_PROXY_EPOCHS": "3",
        "COLDPROXY_GENERATOR_SEEDS": "2",
        "COLDPROXY_DIFFUSION_EPOCHS": "10",
        "COLDPROXY_GATE_EPOCHS": "3",
        "COLDPROXY_EVAL_EVERY": "1",
    }
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        flags = [
            "--format",
            "generic",
            "--data",
            str(catalogue),
            "--work-dir",
            str(root / "work"),
            "--package-dir",
            str(root / "package"),
        ]
        cli_main(["train", *flags])
        cli_main(["export", *flags])
    return root


def test_the_refit_trains_with_the_evaluation_s_choices(refit_package):
    work = refit_package / "work"
    evaluation = json.loads((work / "metrics.json").read_text())
    refit = json.loads((work / "refit" / "metrics.json").read_text())
    choices = evaluation["choices"]
    assert refit["evaluation"]["run_id"] == evaluation["run_id"] and refit["evaluation"]["choices"] == choices
    # every stage ran exactly the epochs the evaluation kept, validating nothing
    assert refit["refit"]["id_model"]["epochs_run"] == choices["id_model"]["epochs"] > 0
    for member, chosen in choices["generator"]["members"].items():
        assert refit["refit"][f"generator {member}"]["epochs_run"] == chosen["epochs"] > 0
    assert refit["refit"]["diffusion"]["epochs_run"] == choices["experts"]["diffusion_epochs"]
    assert refit["refit"]["gate"]["epochs_run"] == choices["experts"]["gate_epochs"]
    assert not any("val_cold_ndcg@20" in e for e in refit["history"]["generator both"])
    package = load_package(refit_package / "package")
    m = package.manifest
    assert m.served["refit"] and m.evaluation["run_id"] == evaluation["run_id"]
    assert m.experts["sampler"] == choices["experts"]["sampler"] and m.experts["served"] == choices["experts"]["served"]
    assert m.experts["calibration"] == choices["calibration"]
    # the blend is the evaluation's: its members and weights
    assert m.encoders["proxy"].count("#") == sum("#" in k for k in choices["generator"]["weights"])


def test_the_refit_makes_every_item_with_a_positive_warm_and_serves_the_rest_by_proxy(refit_package, catalogue):
    ds = load_generic(catalogue)
    package = load_package(refit_package / "package")
    with_positive = {ds.item_ids[i] for i in np.unique(ds.items)}
    assert set(package.item_ids) == with_positive and len(with_positive) == 116
    assert set(package.proxy_ids) == set(ds.item_ids) - with_positive and len(package.proxy_ids) == 10
    assert package.manifest.served["training_interactions"] == len(ds.items)
    # the evaluation's package: the split's warm items by ID (a fifth of the catalogue held out), the rest by proxy
    evaluated = np.load(refit_package / "work" / "embeddings.npz")
    assert abs(len(evaluated["item_ids"]) - 0.8 * ds.n_items) <= 1 and len(evaluated["proxy_item_ids"]) > 20
    assert set(evaluated["item_ids"]) | set(evaluated["proxy_item_ids"]) == set(ds.item_ids)


def test_a_served_refit_answers_every_item_and_recommends_nothing_a_user_interacted_with(
    refit_package, catalogue, redis_prefix
):
    ds = load_generic(catalogue)
    seen = ds.seen()
    assert len(ds.seen_only) > 0 and len(seen) == len(ds.items) + len(ds.seen_only)
    with_positive = {ds.item_ids[i] for i in np.unique(ds.items)}
    settings = ServiceSettings(
        package_dir=refit_package / "package",
        redis_url=REDIS_URL,
        redis_prefix=f"{redis_prefix}:refit",
        port=_free_port(),
        bundle_package_dir=None,
    )
    with LiveServer(settings) as live, httpx.Client(base_url=live.url, timeout=30) as c:
        for item_id in ds.item_ids:
            r = c.get(f"/v1/items/{item_id}/embedding")
            assert r.status_code == 200, (item_id, r.text)
            assert r.json()["source"] == ("id" if item_id in with_positive else "proxy"), item_id
        assert c.post("/v1/items", data={"item_id": "new-0", "text": "again"}).status_code == 409
        model = c.get("/v1/model").json()
        assert model["served"]["refit"] and model["evaluation"]["test"] == model["test_metrics"]
        assert model["counts"]["proxy_items"] == 10
        news = c.get("/v1/users/user-1/recommendations", params={"k": 200, "only": "new"}).json()["items"]
        assert {x["item_id"] for x in news} <= set(ds.item_ids) - with_positive and news
        assert {x["source"] for x in news} == {"proxy"}
        for u, user_id in enumerate(ds.user_ids):  # k: every item, so only what is left out is missing
            interacted = {ds.item_ids[i] for i in seen.items[seen.users == u]}
            shown = {
                x["item_id"]
                for x in c.get(f"/v1/users/{user_id}/recommendations", params={"k": ds.n_items}).json()["items"]
            }
            assert shown == set(ds.item_ids) - interacted, user_id
        everything = c.get(
            f"/v1/users/{ds.user_ids[0]}/recommendations", params={"k": ds.n_items, "exclude_seen": "false"}
        ).json()["items"]
        assert len(everything) == ds.n_items
