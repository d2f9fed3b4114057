"""Per-user interactions the client posts after the package was trained (``POST /v1/users/{id}/interactions``), so
a user's recommendations leave out what they have seen since, as they leave out those in the package's data.

Each user's items are a Redis sorted set ``P:history:<user_id>`` scored by when they were posted; only the newest
``COLDPROXY_USER_HISTORY`` are kept (each post trims the rest in its own transaction), and the set expires
``COLDPROXY_USER_HISTORY_TTL_S`` after the user's last post. The users with a history are a sorted set
``P:history-users`` scored by their last post: past ``COLDPROXY_USER_HISTORY_MAX_USERS`` the least recent is
forgotten, so what the histories hold in Redis is bounded whoever posts (the route takes only users the serving
package knows). Keys carry no model version: item IDs outlive packages,
so a rollout keeps every user's history. Every replica reads the same sets (one round trip per recommendation).
"""

from __future__ import annotations

import time

import redis.asyncio as aioredis

from coldproxy.errors import StoreUnavailable
from service.storage.store import stored_id


class UserHistory:
    def __init__(self, client: aioredis.Redis, prefix: str, keep: int, max_users: int, ttl_s: float):
        self.client, self.base, self.keep, self.ttl_ms = client, f"{prefix}:history", keep, int(ttl_s * 1000)
        self.users, self.max_users = f"{prefix}:history-users", max_users

    def key(self, user_id: str) -> str:
        return f"{self.base}:{user_id}"

    async def add(self, user_id: str, item_ids: list[str]) -> int:
        """Keep ``item_ids`` as seen by ``user_id`` now (a repeated one moves to now); returns how many the user has
        kept after the newest ``keep``. Raises ``StoreUnavailable``."""
        key, now = self.key(user_id), time.time()
        try:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.zadd(key, {i: now + n * 1e-6 for n, i in enumerate(item_ids)})  # in the order sent
                pipe.zremrangebyrank(key, 0, -self.keep - 1)
                pipe.pexpire(key, self.ttl_ms)
                pipe.zcard(key)
                kept = int((await pipe.execute())[-1])
            await self._budget(user_id, now)
            return kept
        except Exception as exc:
            raise StoreUnavailable(str(exc)) from exc

    async def _budget(self, user_id: str, now: float) -> None:
        """Note ``user_id`` as the latest poster; past ``max_users``, forget the least recent ones (a separate key:
        on a Redis Cluster it lives in another slot than the user's, so it is not in the user's transaction)."""
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.zadd(self.users, {user_id: now})
            pipe.zremrangebyscore(self.users, "-inf", now - self.ttl_ms / 1000)  # expired by now
            pipe.zcard(self.users)
            over = int((await pipe.execute())[-1]) - self.max_users
        if over > 0:
            for old, _ in await self.client.zpopmin(self.users, over):
                await self.client.delete(self.key(old.decode()))

    async def items(self, user_id: str) -> list[str]:
        """The items ``user_id`` has been posted to have seen (at most ``keep``). Raises ``StoreUnavailable``."""
        try:
            raw = await self.client.zrange(self.key(user_id), 0, self.keep - 1, desc=True)
        except Exception as exc:
            raise StoreUnavailable(str(exc)) from exc
        return [i for i in map(stored_id, raw) if i is not None]

    async def forget(self, user_id: str) -> bool:
        """Delete the user's kept items (a privacy request); whether there were any. Raises ``StoreUnavailable``."""
        try:
            await self.client.zrem(self.users, user_id)
            return bool(await self.client.delete(self.key(user_id)))
        except Exception as exc:
            raise StoreUnavailable(str(exc)) from exc
