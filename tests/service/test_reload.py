"""Zero-downtime bundle rollout: POST /v1/admin/reload swaps only once the new bundle is ready."""

import shutil
import threading

import httpx
import numpy as np

from coldproxy.package import Manifest, write_manifest


def test_reload_swaps_bundle_without_a_failed_request(replica, package_dir, tmp_path, trained):
    live_dir = tmp_path / "package"
    shutil.copytree(package_dir, live_dir)
    manifest = Manifest.model_validate_json((live_dir / "manifest.json").read_text())
    warm_id = trained.dataset.item_ids[trained.split.warm_items[0]]
    with replica(package_dir=live_dir, reload_grace_s=0.5) as live, httpx.Client(base_url=live.url, timeout=30) as c:
        v1 = c.get("/v1/model").json()["package_version"]
        assert c.post("/v1/items", data={"item_id": "before-reload", "text": "A film about clocks."}).status_code == 200
        # warm-up: clicks and a learnt ID embedding; a rollout re-gates the re-embedded item with them too
        learnt = c.get(f"/v1/items/{warm_id}/embedding").json()["embedding"]
        r = c.post("/v1/items/before-reload/interactions", json={"count": 5, "id_embedding": learnt})
        assert r.status_code == 200, r.text
        served_before = np.array(c.get("/v1/items/before-reload/embedding").json()["embedding"])
        assert f'coldproxy_graduation_cosine_count{{version="{v1}"}} 1.0' in c.get("/metrics").text

        codes, stop = [], threading.Event()

        def poll():
            with httpx.Client(base_url=live.url, timeout=30) as p:
                while not stop.is_set():
                    codes.append(p.get("/readyz").status_code)
                    codes.append(p.get(f"/v1/items/{warm_id}/embedding").status_code)

        t = threading.Thread(target=poll)
        t.start()
        try:
            write_manifest(live_dir, manifest.model_copy(update={"version": v1 + "-r2"}))
            r = c.post("/v1/admin/reload")
            assert r.status_code == 200, r.text
            out = r.json()
            assert {k: out[k] for k in ("previous_version", "package_version", "changed")} == {
                "previous_version": v1,
                "package_version": v1 + "-r2",
                "changed": True,
            }
            assert out["rollout"]["state"] == "switched" and out["rollout"]["backfill"]["reembedded"] >= 1, out
            assert c.post("/v1/admin/reload").json()["changed"] is False  # same directory, same version
        finally:
            stop.set()
            t.join()
        assert len(codes) > 4 and set(codes) == {200}, codes
        assert c.get("/v1/model").json()["package_version"] == v1 + "-r2"
        assert c.get("/readyz").json()["package_version"] == v1 + "-r2"
        # keys carry the package version; the same encoders re-embedded the old package's items for the new one
        got = c.get("/v1/items/before-reload/embedding")
        assert got.status_code == 200 and got.json()["package_version"] == v1 + "-r2"
        served_after = np.array(got.json()["embedding"])  # same graphs and ID space: the same re-gated vector
        cos = served_after @ served_before / np.linalg.norm(served_after) / np.linalg.norm(served_before)
        assert cos > 0.999, cos
        fresh = c.post("/v1/items", data={"item_id": "no-clicks-yet", "text": "A film about clocks."}).json()[
            "embedding"
        ]
        # ... which the warm-up moved: the same content without clicks is served another vector
        assert np.linalg.norm(served_after - fresh) > 10 * np.linalg.norm(served_after - served_before)
        assert c.post("/v1/items", data={"item_id": "before-reload", "text": "A film about clocks."}).status_code == 409

        # a broken package (a new version whose files do not match their hashes) is refused and the serving one stays
        (live_dir / "proxy.onnx").write_bytes(b"tampered")
        write_manifest(live_dir, manifest.model_copy(update={"version": v1 + "-r3"}))
        r = c.post("/v1/admin/reload")
        assert r.status_code == 422 and "still serving" in r.json()["detail"] and "sha256" in r.json()["detail"]
        assert c.get("/v1/model").json()["package_version"] == v1 + "-r2"
        assert c.get("/v1/items/before-reload/embedding").status_code == 200


def test_reload_needs_an_admin_key(replica):
    with (
        replica(api_key="write-key-1234", admin_api_keys=["admin-key-1234"]) as live,
        httpx.Client(base_url=live.url, timeout=30) as c,
    ):
        assert c.post("/v1/admin/reload").status_code == 401
        assert c.post("/v1/admin/reload", headers={"X-API-Key": "write-key-1234"}).status_code == 401
        r = c.post("/v1/admin/reload", headers={"X-API-Key": "admin-key-1234"})
        assert r.status_code == 200 and r.json()["changed"] is False
