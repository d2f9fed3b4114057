"""All settings. Every option is also an environment variable (prefix ``COLDPROXY_``; a ``.env`` file is read too):
``TrainSettings`` drives ``coldproxy train``/``export`` and the benchmarks, ``BundleSettings`` ``coldproxy
train-bundles``, ``ServiceSettings`` ``coldproxy serve``. ``docs/configuration.md`` is generated from them
(``coldproxy.settings_reference``)."""

from coldproxy.config.base import DEFAULT_DATASETS, MEASURED, REPO_ROOT, usable_cores
from coldproxy.config.bundles import BundleSettings
from coldproxy.config.service import ServiceSettings
from coldproxy.config.train import TrainSettings

__all__ = [
    "BundleSettings",
    "DEFAULT_DATASETS",
    "MEASURED",
    "REPO_ROOT",
    "ServiceSettings",
    "TrainSettings",
    "usable_cores",
]
