"""Bundles over HTTP: the bundle model package loaded for serving, its catalog (Redis namespace
``<prefix>:bundles:<package version>``, FAISS index, sync), and the write path of a new bundle.

A bundle is posted with its member item IDs (catalogue items, with or without user interactions);
its vector comes from ``coldproxy.bundle_package.BundleEmbedder`` (the package's ONNX sampler and
gate) off the event loop, is stored in Redis with the members, and indexed for ranking.
"""

from __future__ import annotations

import numpy as np
from anyio import to_thread

from coldproxy.bundle_package import VIEW_EXPERTS, VIEWS, BundleEmbedder, BundleVectors, load_bundle_package
from coldproxy.bundle_protocol import BundleOut
from coldproxy.config import ServiceSettings
from coldproxy.errors import Conflict, InvalidInput, TooLarge, UnknownMembers
from service.engine.graph_threads import Admission
from service.metrics import Metrics
from service.storage.catalog import Catalog
from service.storage.open import open_store
from service.storage.records import StoredItem


class BundleServing:
    @classmethod
    async def open(cls, settings: ServiceSettings, metrics: Metrics, admission: Admission) -> "BundleServing":
        self = cls()
        self.admission = admission
        self.package = await to_thread.run_sync(load_bundle_package, settings.bundle_package_dir)
        self.version = self.package.version
        self.embedder = await to_thread.run_sync(lambda: BundleEmbedder(self.package, settings.ort_options()))
        self.metrics = metrics
        arrays = self.package.arrays
        self.item_row = {str(x): i for i, x in enumerate(arrays["item_ids"])}
        store = await open_store(
            settings, f"{settings.redis_prefix}:bundles", self.version, arrays["bundle_emb"].shape[1]
        )
        self.catalog = Catalog(
            "bundles",
            [str(u) for u in arrays["user_ids"]],
            arrays["user_emb"],
            [str(b) for b in arrays["bundle_ids"]],
            arrays["bundle_emb"],
            store,
            metrics,
            settings.local_reads,
            space=self.version,
            max_user_norm=settings.max_user_norm,
            norm_slack=settings.vector_norm_slack,  # its own space: the package's version
            store_lookups=settings.max_store_lookups,
            seen=self.package.seen,
        )
        try:
            await self.catalog.start()
        except Exception:
            await self.catalog.close()
            raise
        return self

    def member_rows(self, item_ids: list[str]) -> np.ndarray:
        """Rows of the distinct member items, in first-seen order; ``UnknownMembers`` names any the
        package's catalogue does not hold."""
        distinct = list(dict.fromkeys(item_ids))
        unknown = [i for i in distinct if i not in self.item_row]
        if unknown:
            raise UnknownMembers(unknown, self.version)
        return np.array([self.item_row[i] for i in distinct], np.int64)

    async def embed(self, rows: list[np.ndarray]) -> BundleVectors:
        async with self.admission.admit(len(rows)):
            with self.metrics.time_stage("bundle_embed"):
                return await to_thread.run_sync(self.embedder.embed, rows)

    async def create(self, bundle_id: str, item_ids: list[str], overwrite: bool, max_members: int) -> BundleOut:
        """A new bundle's vector from its members, stored with them in Redis and indexed here: 409 for a
        bundle the model knows (or an existing one without ``overwrite``), 413 past ``max_members``,
        422 naming unknown members."""
        if bundle_id in self.catalog.warm:
            raise Conflict(f"bundle {bundle_id} is known to the model: it is served from its interactions")
        if len(item_ids) > max_members:
            raise TooLarge(f"at most {max_members} member items per bundle")
        rows = self.member_rows(item_ids)
        out = await self.embed([rows])
        emb = out.embedding[0]
        if not np.isfinite(emb).all():
            raise InvalidInput("the model produced a non-finite embedding for these members; nothing was stored")
        members = [str(x) for x in self.package.arrays["item_ids"][rows]]
        view_w = dict(zip(VIEWS, map(float, out.view_weights[0])))
        experts = {
            view: dict(zip(VIEW_EXPERTS, map(float, w[0])))
            for view, w in zip(VIEWS, (out.bundle_view_weights, out.item_view_weights))
        }
        fields = {"members": ",".join(members), "view_weights": ",".join(f"{w:.9g}" for w in view_w.values())}
        if not await self.catalog.put(bundle_id, StoredItem(emb, [], fields=fields), overwrite):
            raise Conflict(
                f"bundle {bundle_id} already exists for bundle recommender {self.version}; "
                "send overwrite=true to replace it"
            )
        return BundleOut(
            bundle_id=bundle_id,
            package_version=self.version,
            source="proxy",
            members=len(rows),
            view_weights=view_w,
            expert_weights=experts,
            embedding=emb.tolist(),
        )
