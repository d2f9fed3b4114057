"""Zero-downtime bundle rollout: POST /v1/admin/reload swaps only once the new bundle is ready."""

import shutil
import threading

import httpx

from coldproxy.package import Manifest, write_manifest


def test_reload_swaps_bundle_without_a_failed_request(replica, package_dir, tmp_path, trained):
    live_dir = tmp_path / "package"
    shutil.copytree(package_dir, live_dir)
    manifest = Manifest.model_validate_json((live_dir / "manifest.json").read_text())
    warm_id = trained.dataset.item_ids[trained.split.warm_items[0]]
    with replica(package_dir=live_dir, reload_grace_s=0.5) as live, httpx.Client(base_url=live.url, timeout=30) as c:
        v1 = c.get("/v1/model").json()["bundle_version"]
        assert c.post("/v1/items", data={"item_id": "before-reload", "text": "A film about clocks."}).status_code == 200

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
            assert r.json() == {"previous_version": v1, "bundle_version": v1 + "-r2", "changed": True}
            assert c.post("/v1/admin/reload").json()["changed"] is False  # same directory, same version
        finally:
            stop.set()
            t.join()
        assert len(codes) > 4 and set(codes) == {200}, codes
        assert c.get("/v1/model").json()["bundle_version"] == v1 + "-r2"
        assert c.get("/readyz").json()["bundle_version"] == v1 + "-r2"
        # keys carry the package version: items of the old package are not served in the new space
        assert c.get("/v1/items/before-reload/embedding").status_code == 404
        assert c.post("/v1/items", data={"item_id": "before-reload", "text": "A film about clocks."}).status_code == 200

        # a broken package is refused and the serving one stays
        (live_dir / "proxy.onnx").write_bytes(b"tampered")
        r = c.post("/v1/admin/reload")
        assert r.status_code == 422 and "still serving" in r.json()["detail"] and "sha256" in r.json()["detail"]
        assert c.get("/v1/model").json()["bundle_version"] == v1 + "-r2"
        assert c.get("/v1/items/before-reload/embedding").status_code == 200


def test_reload_needs_an_admin_key(replica):
    with replica(api_key="write-key-1234", admin_api_keys=["admin-key-1234"]) as live, \
            httpx.Client(base_url=live.url, timeout=30) as c:
        assert c.post("/v1/admin/reload").status_code == 401
        assert c.post("/v1/admin/reload", headers={"X-API-Key": "write-key-1234"}).status_code == 401
        r = c.post("/v1/admin/reload", headers={"X-API-Key": "admin-key-1234"})
        assert r.status_code == 200 and r.json()["changed"] is False
