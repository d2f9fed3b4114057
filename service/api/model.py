"""Model routes: GET /v1/model (what is served) and POST /v1/admin/reload (load the model package
directory again; the old package serves until the new one is ready)."""

from __future__ import annotations

from fastapi import APIRouter

from coldproxy.errors import PackageError
from service.schemas import ModelOut, ReloadOut
from service.state import ADMIN, READ, AppState, Live, access

router = APIRouter()


@router.get("/v1/model", response_model=ModelOut, dependencies=[access(READ)])
async def model(sv: Live) -> ModelOut:
    manifest = sv.package.manifest
    bundles = None
    if sv.bundles is not None:
        bm = sv.bundles.package.manifest
        bundles = {"version": bm.version, "created_at": bm.created_at, "scenario": bm.scenario, "dim": 2 * bm.dim,
                   "counts": bm.counts, "cold_bundles_indexed": sv.bundles.catalog.cold_indexed,
                   "test_metrics": bm.metrics.get("test", {})}
    return ModelOut(bundle_version=manifest.version, created_at=manifest.created_at, dims=manifest.dims.model_dump(),
                    encoders=manifest.encoders, counts=manifest.counts, cold_items_indexed=sv.items.cold_indexed,
                    providers=sv.pipeline.providers, test_metrics=manifest.metrics.get("test", {}),
                    calibration=calibration_of(manifest), selection=manifest.metrics.get("selection"),
                    cold_boost=sv.cold_boost, bundle_recommender=bundles,
                    warnings=warnings_of(manifest))


def warnings_of(manifest) -> list[str]:
    id_model = manifest.metrics.get("id_model", {})
    out = [w for w in (id_model.get("diagnostics", {}).get("warning"),) if w]
    if "fallback" in id_model:
        f = id_model["fallback"]
        out.append(f"the configured ID model learnt nothing that generalises; training kept {f['chosen']} instead, "
                   f"chosen on {f['chosen_on']} ({', '.join(f'{k} {v:.4f}' for k, v in f['warm_val_ndcg@20'].items())})")
    return out


def calibration_of(manifest) -> dict | None:
    fitted = manifest.metrics.get("calibration")
    if not fitted:
        return None
    return {k: fitted[k] for k in ("scale", "shift", "chosen_on", "val_all_ndcg20", "val_all_ndcg20_uncalibrated")
            if k in fitted}


@router.post("/v1/admin/reload", response_model=ReloadOut, dependencies=[access(ADMIN)])
async def reload(st: AppState) -> ReloadOut:
    """Load the model package directory again and switch to it once it is ready; the old one serves until then."""
    current = st.serving.version if st.serving else None
    try:
        previous, version = await st.reload()
    except PackageError as exc:
        raise PackageError(f"model package refused, still serving {current}: {exc}") from exc
    return ReloadOut(previous_version=previous, bundle_version=version, changed=previous != version)
