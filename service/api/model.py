"""Model routes: GET /v1/model (what is served), POST /v1/admin/reload (load the model package directory
again and roll it out; the old package serves until the new one holds every stored item) and POST
/v1/admin/promote (serve the shadow candidate)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from coldproxy.errors import PackageError
from coldproxy.protocol import ModelOut, ReloadOut
from service import refit_wait
from service.api.deps import ADMIN, READ, AppState, Live, access

router = APIRouter()


@router.get("/v1/model", response_model=ModelOut, dependencies=[access(READ)])
async def model(st: AppState, sv: Live) -> ModelOut:
    manifest = sv.package.manifest
    bundles = None
    if sv.bundles is not None:
        bm = sv.bundles.package.manifest
        bundles = {
            "package_version": bm.version,
            "version": bm.version,  # version: deprecated, one release
            "created_at": bm.created_at,
            "scenario": bm.scenario,
            "dim": bm.served_dim,
            "calibration": bm.calibration.model_dump(),
            "counts": bm.counts,
            "cold_bundles_indexed": sv.bundles.catalog.cold_indexed,
            "test_metrics": bm.metrics.get("test", {}),
            "test_protocol": bundle_test_protocol(bm),
        }
    return ModelOut(
        package_version=manifest.version,
        created_at=manifest.created_at,
        dims=manifest.dims.model_dump(),
        encoders=manifest.encoders,
        counts=manifest.counts,
        cold_items_indexed=sv.items.cold_indexed,
        providers=sv.pipeline.providers,
        evaluation=manifest.evaluation,
        served=manifest.served,
        refit=refit_wait.describe(st.settings.package_dir),
        test_metrics=manifest.evaluated("test", {}),
        calibration=calibration_of(manifest),
        selection=manifest.evaluated("selection"),
        cold_boost=sv.cold_boost,
        bundle_recommender=bundles,
        warnings=warnings_of(manifest),
        id_fingerprint=sv.package.id_fingerprint,
        id_space=space_of(sv),
        encoder_fingerprint=sv.package.encoder_fingerprint,
        rollout=st.rollout.status() if st.rollout is not None else None,
    )


def bundle_test_protocol(bm) -> dict:
    """What the bundle package's ``test_metrics`` were measured under: its split's test interactions, ranked over
    every bundle but the user's training ones, with the serving policy the package serves (the cold calibration and
    the per-user placement, both fitted on tune), so they are not the representation's alone."""
    c = bm.calibration
    pool = bm.provenance.get("settings", {}).get("calibration_placement_pool")
    return {
        "split": f"Youshu {bm.scenario} test",
        "metrics_at": c.list_length,
        "candidates": "every bundle, the user's training bundles left out (all-unrated)",
        "policy": {
            "size_prior": {"log_size": c.log_size, "offset": c.offset},
            "new_bundle_slots": c.cold_slots,
            "placement_fitted_on": pool,
            "chosen_on": "tune",
        },
        "includes_serving_policy": bool(c.log_size or c.offset or c.cold_slots),
    }


def space_of(sv: Live) -> dict:
    """The served ID space as the manifest records it (a package from before that record: a trained one)."""
    package = sv.package
    if package.manifest.id_space is not None:  # with what loading the given files left out, when it was recorded
        report = package.manifest.metrics.get("id_space", {}).get("report")
        return package.manifest.id_space.model_dump() | {"report": report}
    return {
        "fingerprint": package.id_fingerprint,
        "source": "trained",
        "score": "dot",
        "dim": package.manifest.dims.id_dim,
        "item_vectors": len(package.item_ids),
        "user_vectors": len(package.user_ids),
    }


def warnings_of(manifest) -> list[str]:
    id_model = manifest.metrics.get("id_model", {})
    out = [w for w in (id_model.get("diagnostics", {}).get("warning"),) if w]
    if "fallback" in id_model:
        f = id_model["fallback"]
        scores = ", ".join(f"{k} {v:.4f}" for k, v in f["warm_val_ndcg@20"].items())
        out.append(
            f"the configured ID model learnt nothing that generalises; training kept {f['chosen']} instead, "
            f"chosen on {f['chosen_on']} ({scores})"
        )
    return out


def calibration_of(manifest) -> dict | None:
    fitted = manifest.evaluated("calibration")
    if not fitted:
        return None
    return {
        k: fitted[k]
        for k in ("scale", "shift", "chosen_on", "val_all_ndcg20", "val_all_ndcg20_uncalibrated")
        if k in fitted
    }


@router.post(
    "/v1/admin/reload",
    response_model=ReloadOut,
    dependencies=[access(ADMIN)],
    responses={202: {"model": ReloadOut, "description": "the new package's rollout is still backfilling"}},
)
async def reload(st: AppState) -> JSONResponse:
    """Load the model package directory again. With the serving package's encoders, the new one is rolled out:
    every stored new item is re-embedded for it while the old one serves, then it is switched to (200); if that
    takes longer than COLDPROXY_ROLLOUT_WAIT_S the answer is 202 and the rollout goes on (GET /v1/model)."""
    current = st.serving.version if st.serving else None
    try:
        previous, version, rollout = await st.reload()
    except PackageError as exc:
        raise PackageError(f"model package refused, still serving {current}: {exc}") from exc
    out = ReloadOut(previous_version=previous, package_version=version, changed=previous != version, rollout=rollout)
    return JSONResponse(out.model_dump(), status_code=202 if rollout and rollout["state"] == "backfilling" else 200)


@router.post("/v1/admin/promote", response_model=ReloadOut, dependencies=[access(ADMIN)])
async def promote(st: AppState) -> ReloadOut:
    """Serve the candidate package run in shadow (COLDPROXY_CANDIDATE_PACKAGE_DIR) to every user, once its
    backfill is complete."""
    previous, version, rollout = await st.promote()
    return ReloadOut(previous_version=previous, package_version=version, changed=True, rollout=rollout)
