"""The in-process stand-in for Redis, for the one-command demo only (``COLDPROXY_ALLOW_MEMORY_STORE``); tests always
use Redis. Nothing persists, and no replica hears of another's writes."""

from __future__ import annotations

import time

from service.storage.records import FROM_RECOMMENDER, Entry, check_vector
from service.storage.store import RedisStore


class MemoryStore(RedisStore):
    """In-process stand-in for the one-command demo only; tests always use Redis."""

    durable = False  # nothing persists: no kept features to re-embed from, no user history

    def __init__(self, version: str, dim: int):
        self.base, self.dim, self.records, self.origin = f"memory:{version}", dim, {}, "memory"
        self.version, self.features = version, None  # nothing persists, so nothing to re-embed from
        self.posted: dict[str, float] = {}
        self.hidden: set[str] = set()

    async def exists_many(self, item_ids):
        return [i in self.records for i in item_ids]

    async def ping(self) -> bool:
        return True

    async def put(self, item_id, record, overwrite, features=None, expect=None):
        for vector in record.vectors().values():
            check_vector(vector, self.dim)
        replaced = expect is not None and self.records.get(item_id) is not expect
        if (not overwrite and item_id in self.records) or replaced:
            return False
        self.records[item_id] = record
        self.posted.setdefault(item_id, time.time())
        return True

    async def delete(self, item_id):
        self.posted.pop(item_id, None)
        return self.records.pop(item_id, None) is not None

    async def set_hidden(self, item_id, hidden):
        changed = (item_id in self.hidden) != hidden
        (self.hidden.add if hidden else self.hidden.discard)(item_id)
        return changed

    async def hidden_among(self, item_ids):
        return [i in self.hidden for i in item_ids]

    async def hidden_ids(self):
        return sorted(self.hidden)

    async def get_record(self, item_id):
        return self.records.get(item_id)

    async def get_many_sourced(self, item_ids):
        return {
            i: Entry(
                self.records[i].embedding,
                self.records[i].fields.get("src") == FROM_RECOMMENDER.decode(),
                self.posted[i],
            )
            for i in item_ids
            if i in self.records
        }

    async def all_ids(self):
        return sorted(self.records)

    def follower(self, block_ms: int):
        return None  # one process: nothing to hear from

    async def close(self):
        pass
