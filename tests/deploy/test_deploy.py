"""Deployment files: the Dockerfile passes hadolint, the Helm chart passes `helm lint` and renders
what a cluster needs; every COLDPROXY_* variable they set is a real service setting."""

import base64
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from coldproxy.config import ServiceSettings
from coldproxy.settings_reference import env_names

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "coldproxy"
SETTINGS = {
    env
    for name, field in ServiceSettings.model_fields.items()  # every name the service reads a setting by
    for env in env_names(ServiceSettings, name, field)
}


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (it comes with the test extra on Linux x86_64)")
    return path


def helm(*args: str) -> str:
    r = subprocess.run([tool("helm"), *args], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def render(*sets: str) -> dict[str, list[dict]]:
    out = helm("template", "rel", str(CHART), *[a for s in sets for a in ("--set", s)])
    docs: dict[str, list[dict]] = {}
    for d in yaml.safe_load_all(out):
        if d:
            docs.setdefault(d["kind"], []).append(d)
    return docs


def test_dockerfile_passes_hadolint_and_is_slim_non_root_with_healthcheck():
    r = subprocess.run([tool("hadolint"), str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    text = (ROOT / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", text, re.M)) >= 2  # multi-stage
    assert re.search(r"^USER 10001", text, re.M) and "HEALTHCHECK" in text
    final = text.split("\nFROM ")[-1]
    assert "pip install" not in final and "apt-get" not in final  # no build tools in the final stage
    (workdir,) = re.findall(r"^WORKDIR (\S+)", final, re.M)  # settings read a .env from there: not a writable one
    assert not workdir.startswith("/tmp")
    assert "-c requirements.lock" in text  # the locked versions
    assert set(re.findall(r"\b(COLDPROXY_[A-Z_]+)=", text)) <= SETTINGS
    assert "COLDPROXY_BUNDLE_PACKAGE_DIR" not in text  # the deprecated name of COLDPROXY_BUNDLES_PACKAGE_DIR


def test_helm_chart_lints_in_each_mode():
    helm("lint", "--strict", str(CHART))
    helm(
        "lint",
        "--strict",
        str(CHART),
        "--set",
        "redis.internal.enabled=true",
        "--set",
        "redis.internal.persistence=true",
        "--set",
        "apiKeys.keys={ranker:abcdefgh123}",
        "--set",
        "autoscaling.enabled=false",
    )


def test_helm_renders_probes_security_config_and_hpa():
    docs = render()
    (dep,) = docs["Deployment"]
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz" and c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert pod["securityContext"]["runAsNonRoot"] is True and c["securityContext"]["readOnlyRootFilesystem"] is True
    assert dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False and pod["terminationGracePeriodSeconds"] == 30
    assert "sleep(5)" in " ".join(c["lifecycle"]["preStop"]["exec"]["command"])
    (pdb,) = docs["PodDisruptionBudget"]
    assert pdb["spec"]["maxUnavailable"] == 1
    assert {"Service", "ConfigMap", "HorizontalPodAutoscaler", "Secret"} <= set(docs)
    assert "StatefulSet" not in docs
    (secret,) = docs["Secret"]  # safe by default: no keys given, so the chart generates one of each
    keys = {name: base64.b64decode(value).decode() for name, value in secret["data"].items()}
    assert len(keys["api-keys"].split(":")[1]) == 40 and len(keys["admin-keys"].split(":")[1]) == 40
    (cm,) = docs["ConfigMap"]
    assert set(cm["data"]) <= SETTINGS, set(cm["data"]) - SETTINGS
    assert cm["data"]["REDIS_URL"] == "redis://redis:6379/0"
    assert {m["mountPath"] for m in c["volumeMounts"]} == {"/package", "/tmp", "/etc/coldproxy"}
    assert cm["data"]["COLDPROXY_ADMIN_API_KEYS_FILE"] == "/etc/coldproxy/admin-keys"
    assert "COLDPROXY_ALLOW_ANONYMOUS_WRITES" not in cm["data"]
    assert float(cm["data"]["COLDPROXY_RATE_LIMIT_RPS"]) > 0  # the rate limit is on
    (tmp,) = [v for v in pod["volumes"] if v["name"] == "tmp"]
    assert tmp["emptyDir"]["sizeLimit"]
    (app_policy,) = docs["NetworkPolicy"]  # the pods: HTTP in, DNS and Redis out
    assert app_policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert app_policy["spec"]["ingress"] == [{"ports": [{"port": 8000}]}]
    assert {p["port"] for rule in app_policy["spec"]["egress"] for p in rule["ports"]} == {53, 6379}
    (to_redis,) = [rule for rule in app_policy["spec"]["egress"] if rule["ports"][0]["port"] == 6379]
    assert to_redis["to"] == [{"namespaceSelector": {}}]  # pods in the cluster, never any IP (issue 59)
    (open_cm,) = render("allowAnonymousWrites=true")["ConfigMap"]
    assert open_cm["data"]["COLDPROXY_ALLOW_ANONYMOUS_WRITES"] == "true" and "Secret" not in render(
        "allowAnonymousWrites=true"
    )


def test_helm_api_keys_secret_and_internal_redis():
    docs = render("apiKeys.keys={ranker:abcdefgh123}", "redis.internal.enabled=true", "autoscaling.enabled=false")
    (secret,) = [d for d in docs["Secret"] if d["metadata"]["name"] == "rel-coldproxy-api-keys"]
    assert base64.b64decode(secret["data"]["api-keys"]).decode() == "ranker:abcdefgh123"
    (cm,) = docs["ConfigMap"]
    assert cm["data"]["COLDPROXY_API_KEYS_FILE"] == "/etc/coldproxy/api-keys"
    assert "REDIS_URL" not in cm["data"]  # it carries the password: from the Secret, in the pod's env
    assert docs["StatefulSet"][0]["metadata"]["name"] == "rel-coldproxy-redis"
    redis = docs["StatefulSet"][0]["spec"]["template"]["spec"]["containers"][0]
    args = redis["args"]
    assert args[args.index("--maxmemory-policy") + 1] == "noeviction" and "--maxmemory" in args
    # the in-chart Redis requires a password, generated into its own Secret; the pods get it from there
    (password_secret,) = [d for d in docs["Secret"] if d["metadata"]["name"] == "rel-coldproxy-redis"]
    assert len(base64.b64decode(password_secret["data"]["password"])) >= 32
    assert args[args.index("--requirepass") + 1] == "$(REDIS_PASSWORD)"
    assert redis["env"][0]["valueFrom"]["secretKeyRef"] == {"name": "rel-coldproxy-redis", "key": "password"}
    env = {e["name"]: e for e in docs["Deployment"][0]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "rel-coldproxy-redis"
    assert env["REDIS_URL"]["value"] == "redis://:$(REDIS_PASSWORD)@rel-coldproxy-redis:6379/0"
    (policy,) = [p for p in docs["NetworkPolicy"] if p["metadata"]["name"] == "rel-coldproxy-redis"]
    # only this release's coldproxy pods reach the in-cluster Redis
    assert policy["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/instance"] == "rel"
    (app_policy,) = [p for p in docs["NetworkPolicy"] if p["metadata"]["name"] == "rel-coldproxy"]
    (to_redis,) = [rule for rule in app_policy["spec"]["egress"] if rule["ports"][0]["port"] == 6379]
    assert to_redis["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "redis"
    assert "HorizontalPodAutoscaler" not in docs and docs["Deployment"][0]["spec"]["replicas"] == 2
    redis_pod = docs["StatefulSet"][0]["spec"]["template"]["spec"]
    assert redis_pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert redis_pod["automountServiceAccountToken"] is False and redis["securityContext"]["readOnlyRootFilesystem"]
    pod = docs["Deployment"][0]["spec"]["template"]["spec"]
    assert any(v.get("secret", {}).get("secretName") == "rel-coldproxy-api-keys" for v in pod["volumes"])


def test_helm_mounts_a_bundle_package_only_when_given_one():
    (dep,) = render("bundlePackage.volume.persistentVolumeClaim.claimName=shelves")["Deployment"]
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert {m["mountPath"] for m in c["volumeMounts"]} == {"/package", "/bundle-package", "/tmp", "/etc/coldproxy"}
    (vol,) = [v for v in pod["volumes"] if v["name"] == "bundle-package"]
    assert vol["persistentVolumeClaim"]["claimName"] == "shelves"
    (cm,) = render()["ConfigMap"]
    assert cm["data"]["COLDPROXY_BUNDLES_PACKAGE_DIR"] == "/bundle-package"


def test_helm_ships_the_grafana_dashboard_only_when_asked():
    assert not [c for c in render().get("ConfigMap", []) if c["metadata"]["name"].endswith("-dashboard")]
    maps = [
        c for c in render("grafana.dashboard.enabled=true")["ConfigMap"] if c["metadata"]["name"].endswith("-dashboard")
    ]
    assert len(maps) == 1 and maps[0]["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = json.loads(maps[0]["data"]["coldproxy.json"])
    assert shipped == json.loads((CHART / "dashboards" / "coldproxy.json").read_text())


def test_helm_keda_scales_on_queue_depth_and_ingestion_latency_instead_of_cpu():
    assert "ScaledObject" not in render() and render()["HorizontalPodAutoscaler"]
    sets = ("autoscaling.keda.enabled=true", "autoscaling.keda.prometheusAddress=http://prom.monitoring.svc")
    helm("lint", "--strict", str(CHART), *[a for s in sets for a in ("--set", s)])
    docs = render(*sets)
    assert "HorizontalPodAutoscaler" not in docs  # KEDA makes its own
    (scaled,) = docs["ScaledObject"]
    assert scaled["spec"]["scaleTargetRef"]["name"] == docs["Deployment"][0]["metadata"]["name"]
    queries = {t["metricType"]: t["metadata"]["query"] for t in scaled["spec"]["triggers"]}
    assert queries["AverageValue"].startswith("sum(coldproxy_batch_queue_depth{namespace=")
    assert (
        "coldproxy_request_seconds_bucket" in queries["Value"]
        and 'route=~"/v1/items|/v1/items:batch"' in queries["Value"]
    )
    assert all(t["metadata"]["serverAddress"] == "http://prom.monitoring.svc" for t in scaled["spec"]["triggers"])
    # the queries use metrics the service exports, with those labels
    from prometheus_client import generate_latest

    from service.metrics import Metrics

    exported = generate_latest(Metrics().registry).decode()
    assert "coldproxy_batch_queue_depth" in exported and "coldproxy_request_seconds" in exported


def test_a_redis_password_never_lands_in_the_config_map():
    for url in (
        "redis://:s3cret@ext:6379/0",
        "redis://ext:6379/0?password=s3cret",
        "redis://ext:6379/0?PassWord=s3cret",
    ):
        r = subprocess.run(
            [tool("helm"), "template", "rel", str(CHART), "--set", f"redis.url={url}"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert r.returncode != 0 and "urlSecret" in r.stderr and "s3cret" not in r.stdout, url
    docs = render("redis.urlSecret.name=redis-url")
    (cm,) = docs["ConfigMap"]
    assert "REDIS_URL" not in cm["data"]
    env = {e["name"]: e for e in docs["Deployment"][0]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["REDIS_URL"]["valueFrom"]["secretKeyRef"] == {"name": "redis-url", "key": "url"}


def test_the_lock_pins_every_dependency_the_project_names():
    """requirements.lock (scripts/lock.sh) holds an exact version of every package pyproject.toml asks for, so the
    Dockerfile and CI, which install with it, get the same packages every time."""
    import tomllib

    lock = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            lock[re.sub(r"[-_.]+", "-", name).lower()] = version
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = list(project["dependencies"])
    for extra in ("train", "test", "bench"):
        wanted += project["optional-dependencies"][extra]
    names = {
        re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9_.\-]+", w).group()).lower()
        for w in wanted
        if "platform_machine" not in w
    }
    missing = sorted(n for n in names if n not in lock)
    assert not missing, f"not in requirements.lock (rerun scripts/lock.sh): {missing}"
    assert lock["torch"] == "2.13.0"
