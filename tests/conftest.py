"""Shared fixtures: a small real model package (MovieLens-posters, 400 most popular movies) trained
and exported once per session, and a real uvicorn server on a free loopback port backed by real Redis.

Tiers: a test that needs a trained model (``trained``, ``package_dir``, the bundle model) or a live
server on one is marked ``slow`` here; ``pytest -m "not slow"`` runs the rest in well under a minute.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest
import redis
import uvicorn

from coldproxy.config import DEFAULT_DATASETS, ServiceSettings, TrainSettings

MOVIELENS = DEFAULT_DATASETS / "movielens-posters"
SLOW_FIXTURES = {"trained", "package_dir", "replica", "server", "client", "trained_bundles", "refit_package"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(scope="session")
def movielens_dir() -> Path:
    if not (MOVIELENS / "ratings.csv").exists():
        pytest.fail(f"MovieLens-posters not found at {MOVIELENS}")
    return MOVIELENS


@pytest.fixture(scope="session")
def train_settings(tmp_path_factory, movielens_dir) -> TrainSettings:
    root = tmp_path_factory.mktemp("coldproxy")
    return TrainSettings(
        data_dir=movielens_dir,
        max_items=400,
        seed=0,
        select_modalities=True,  # the blend of single-modality generators, off by default, covered here
        id_epochs=20,
        proxy_epochs=8,
        eval_every=5,
        diffusion=True,
        diffusion_epochs=20,
        gate_epochs=5,
        cache_dir=root / "cache",
        work_dir=root / "train",
        package_dir=root / "package",
    )


@pytest.fixture(scope="session")
def trained(train_settings):
    from export.encoders import encoder_graphs
    from models.items.checkpoint import save_checkpoint
    from models.items.train import train

    result = train(train_settings, encoder_graphs, progress=False)
    save_checkpoint(result, train_settings.work_dir)
    return result


@pytest.fixture(scope="session")
def package_dir(trained, train_settings) -> Path:
    from export.package import build_package

    return build_package(train_settings)


@pytest.fixture(scope="session")
def redis_client():
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.fail("tests need a real Redis at 127.0.0.1:6379 (.ci/run starts one)")
    yield client
    client.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    def __init__(self, settings: ServiceSettings):
        from service.app import create_app
        from service.server import uvicorn_config

        self.app = create_app(settings)
        self.settings = settings
        self.server = uvicorn.Server(uvicorn_config(self.app, settings, host="127.0.0.1", log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = f"http://127.0.0.1:{settings.port}"

    def __enter__(self) -> "LiveServer":
        self.thread.start()
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if not self.thread.is_alive():
                raise RuntimeError("server thread died during start-up")
            time.sleep(0.2)
        raise RuntimeError("server did not become ready")

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def _own_prefix(redis_client):
    """A Redis key prefix nobody else uses; its keys are deleted afterwards."""
    prefix = f"coldproxy-test-{uuid.uuid4().hex[:8]}"
    yield prefix
    keys = list(redis_client.scan_iter(f"{prefix}:*"))
    if keys:
        redis_client.delete(*keys)


@pytest.fixture(scope="session")
def redis_prefix(redis_client):
    yield from _own_prefix(redis_client)


@pytest.fixture()
def fresh_prefix(redis_client):
    """A prefix of this test's own (for tests that count what is stored)."""
    yield from _own_prefix(redis_client)


@pytest.fixture(scope="session")
def replica(package_dir, redis_prefix):
    """``with replica(**overrides) as live:`` starts one more server on the test model package and Redis prefix."""

    def make(**overrides) -> LiveServer:
        base = {
            "package_dir": package_dir,
            "redis_url": REDIS_URL,
            "redis_prefix": redis_prefix,
            "port": _free_port(),
            "bundle_package_dir": None,
        }
        return LiveServer(ServiceSettings(**(base | overrides)))

    return make


@pytest.fixture(scope="session")
def server(replica):
    with replica() as live:
        yield live


@pytest.fixture(scope="session")
def tiny_package_dir(tmp_path_factory) -> Path:
    """The fast tier's model package: tiny random encoders and generator (``tests/tiny_package.py``)."""
    from tests.tiny_package import build_tiny_package

    return build_tiny_package(tmp_path_factory.mktemp("tiny") / "package")


@pytest.fixture(scope="session")
def tiny_server(tiny_package_dir, redis_prefix):
    settings = ServiceSettings(
        package_dir=tiny_package_dir,
        redis_url=REDIS_URL,
        redis_prefix=f"{redis_prefix}:tiny",
        port=_free_port(),
        bundle_package_dir=None,
    )
    with LiveServer(settings) as live:
        yield live


@pytest.fixture()
def tiny(tiny_server):
    with httpx.Client(base_url=tiny_server.url, timeout=30) as c:
        yield c


@pytest.fixture()
def client(server):
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


@pytest.fixture(scope="session")
def local_ray():
    """A local Ray instance of 2 CPUs for the offline engines' tests (issue 43), shut down at the end."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()
