"""Opening the store a deployment uses: Redis, Redis Cluster, or -- for the demo only, when allowed and no Redis
answers -- an in-process ``MemoryStore``; with the item package's content features kept beside it and the users'
seen items, where the store is durable."""

from __future__ import annotations

import logging

from coldproxy.errors import StoreUnavailable
from service.storage.cluster import ClusterStore
from service.storage.history import UserHistory
from service.storage.kept_features import FeatureStore
from service.storage.memory import MemoryStore
from service.storage.store import RedisStore, redact_url

log = logging.getLogger("coldproxy.store")


async def open_store(settings, prefix: str, version: str, dim: int) -> RedisStore:
    """The Redis store of one model version under ``prefix``; with ``s.allow_memory_store`` an
    in-process one when Redis does not answer (demo only), else ``StoreUnavailable``."""
    if settings.redis_cluster:
        try:
            store = ClusterStore(
                settings.redis_url, prefix, version, dim, settings.sync_stream_maxlen, settings.redis_cluster_partitions
            )
            await store.client.initialize()
        except Exception as exc:
            raise StoreUnavailable(f"Redis Cluster at {redact_url(settings.redis_url)} does not answer: {exc}") from exc
    else:
        store = RedisStore(settings.redis_url, prefix, version, dim, settings.sync_stream_maxlen)
    if await store.ping():
        return store
    await store.close()
    if not settings.allow_memory_store:
        raise StoreUnavailable(
            f"Redis at {redact_url(settings.redis_url)} does not answer "
            "(set COLDPROXY_ALLOW_MEMORY_STORE=1 for a demo without it)"
        )
    log.warning(
        "Redis at %s does not answer: using an in-process store for %s; nothing will persist",
        redact_url(settings.redis_url),
        prefix,
    )
    return MemoryStore(version, dim)


async def open_item_store(settings, version: str, dim: int, encoder_fingerprint: str, feature_width: int) -> RedisStore:
    """``open_store`` for the item package under the deployment's prefix, keeping content features (unless
    ``COLDPROXY_KEEP_FEATURES=off``) when the store is durable."""
    store = await open_store(settings, settings.redis_prefix, version, dim)
    if settings.keep_features != "off" and store.durable:
        store.features = FeatureStore(
            store.client,
            settings.redis_prefix,
            encoder_fingerprint,
            feature_width,
            settings.keep_features,
            settings.redis_cluster_partitions if settings.redis_cluster else 0,
        )
    return store


def user_history(settings, store: RedisStore) -> UserHistory | None:
    """The users' seen items on ``store``'s client, when kept (``COLDPROXY_USER_HISTORY``) and the store is durable."""
    if not settings.user_history or not store.durable:
        return None
    return UserHistory(
        store.client,
        settings.redis_prefix,
        settings.user_history,
        settings.user_history_max_users,
        settings.user_history_ttl_s,
    )
