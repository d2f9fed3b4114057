"""The bundle model the service tests share: a (briefly trained) MoDiffE bundle model on the real Youshu cold split,
exported to a package once per session, and a replica serving it beside the item package."""

from __future__ import annotations

import numpy as np
import pytest

from coldproxy.bundle_package import ColdCalibration
from coldproxy.config import DEFAULT_DATASETS

YOUSHU = DEFAULT_DATASETS / "youshu"


@pytest.fixture(scope="session")
def trained_bundles(tmp_path_factory):
    from coldproxy.config import BundleSettings
    from export.bundle_package import build_bundle_package
    from models.bundles.data import load_youshu
    from models.bundles.train import train_bundle_model

    s = BundleSettings(
        data_dir=YOUSHU,
        scenario="cold",
        id_epochs=1,
        id_batch=16384,
        eval_every=1,
        composition_epochs=1,
        diffusion_epochs=1,
        gate_epochs=1,
        gate_variants=["full"],
        cold_calibration=False,
        package_dir=tmp_path_factory.mktemp("bundles") / "package",
    )
    d = load_youshu(s.data_dir, s.scenario)
    m = train_bundle_model(d, s, progress=False)
    m.calibration = CALIBRATION  # its choice on tune is tested in tests/models/test_bundles.py
    m.placement = np.linspace(-1.0, 1.0, d.n_users).astype(np.float32)  # each user's own offset for new bundles
    return m, build_bundle_package(m, s)


CALIBRATION = ColdCalibration(
    bundle_source="anchor", bundle_view=2.0, item_view=0.5, log_size=1.5, offset=-0.75, cold_slots=3
)


@pytest.fixture(scope="session")
def package(trained_bundles):
    return trained_bundles[1]


@pytest.fixture(scope="session")
def model(trained_bundles):
    return trained_bundles[0]


@pytest.fixture(scope="session")
def bundle_server(replica, package):
    with replica(bundle_package_dir=package) as live:
        yield live
