"""Rolling a new model package out without losing a cached item.

Every POSTed item's content features are kept in Redis under the encoders' fingerprint
(``service.storage.store.FeatureStore``). A package with the same encoders re-embeds them without the
original image or text:

* ``Shadow``: while a package is being rolled out, every item POSTed to the serving package is embedded
  for the new one as well, from the same features, and stored under its version (items that arrive
  during the backfill land in both versions). Shadow mode keeps doing so without ever serving it.
* ``backfill``: re-embeds every item with kept features that the new package does not hold yet, in
  batches through the graphs after the encoders, with a resume position in Redis
  (``P:<version>:reembed``, kept by ``service/storage/versions.py``); then catch-up passes until one finds nothing
  missing. Items the new package knows as warm (the retrained recommender learnt them) graduate: they are not
  re-embedded. Writes never overwrite (an item POSTed meanwhile has the newer content). ``coldproxy reembed`` runs it
  offline, the service on ``POST /v1/admin/reload``.
* ``Rollout``: the service's automatic mode: shadow + backfill, then the switch once the new package
  holds at least ``COLDPROXY_ROLLOUT_SWITCH_FRACTION`` of the items (or never, in shadow mode); the old
  version's keys expire ``COLDPROXY_ROLLOUT_KEEP_OLD_S`` after the switch (``service.storage.versions``).

With several replicas, reload every one: each dual-writes from its reload until it switches, and each
backfill covers what the others wrote meanwhile, so once the last replica has switched every item is in.
The ID space of each package is its own (keys carry the version, ``ModelPackage.id_fingerprint``); an ID
embedding sent on the warm-up path is re-used only by a package of the same ID space. The recommender's own
vectors the serving package was given (``PUT /v1/items:id-embeddings``) are carried over by ``carry_given``
only to a package of the same space; to one of another space (the recommender retrained from scratch) they are
not -- its items are re-embedded from their content instead, the report says how many vectors were left behind
(``id_space_changed``, ``id_vectors_dropped``) and the log says to sync the new recommender's export.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import asdict, dataclass, replace
from typing import Any, Callable, Protocol

import numpy as np

from coldproxy.errors import ColdproxyError, Conflict, public_reason
from service.engine.features import ContentFeatures
from service.metrics import Metrics
from service.storage import versions
from service.storage.catalog import Catalog
from service.storage.kept_features import KeptFeatures


class Served(Protocol):
    """What a rollout reads and writes of a loaded package (``service.serving.Serving`` is one), so the rollout does
    not depend on the state that starts it."""

    version: str
    package: Any  # coldproxy.package.ModelPackage
    items: Catalog
    bundles: Any  # service.bundle_serving.BundleServing | None
    shadow: Any  # the Rollout writing into another package, or None
    metrics: Metrics
    pipeline: Any  # service.engine.pipeline.ProxyPipeline
    graphs: Any  # service.engine.graph_threads.GraphThreads

    def stored_record(self, result) -> Any: ...

    async def close(self) -> None: ...


log = logging.getLogger("coldproxy.rollout")
CLOCK_SKEW_S = 60.0  # how far replicas' clocks may disagree: a catch-up looks this much further back


@dataclass
class BackfillReport:
    total: int = 0  # items with kept features
    reembedded: int = 0
    present: int = 0  # already held by the new package (a POST during the backfill, or an earlier run)
    graduated: int = 0  # warm in the new package
    no_features: int = 0  # listed, but without usable features
    failed: int = 0
    passes: int = 0
    refreshed: int = 0  # held already, but changed since the backfill began: re-embedded over the stale vector
    seconds: float = 0.0
    bundles_reembedded: int = 0  # POSTed bundles, for a new bundle recommender, from their stored members
    bundles_present: int = 0
    bundles_failed: int = 0  # e.g. a member the new bundle recommender does not know
    id_space_changed: bool = False  # the new package serves another ID space than the old one
    id_vectors_carried: int = 0  # the recommender's vectors given to the old package, given to the new one too
    id_vectors_dropped: int = 0  # ... not carried: the new package's space is another one

    @property
    def covered(self) -> float:
        """Share of the items the new package now holds or serves as warm."""
        if self.total == 0:
            return 1.0
        return min(1.0, (self.reembedded + self.present + self.graduated) / self.total)

    def as_dict(self) -> dict:
        return asdict(self) | {
            "covered": round(self.covered, 6),
            "items_per_s": round(self.reembedded / self.seconds, 1) if self.seconds else None,
        }


def reembed(target: Served, ids: list[str], kept: dict[str, KeptFeatures]) -> dict[str, object]:
    """The stored records of ``target`` for items from their kept features (runs on a graph thread): the
    graphs after the encoders, and the gate again for items that had interactions (with their ID embedding
    when it is of ``target``'s ID space). item -> ``StoredItem``, or the exception that item raised."""
    ids = [i for i in ids if i in kept]
    if not ids:
        return {}
    features = ContentFeatures.unpack(np.stack([kept[i].features for i in ids]), target.package.manifest.dims)
    out: dict[str, object] = {}
    same_space = target.package.id_fingerprint
    for i, embedded, mask in zip(ids, target.pipeline.from_features(features), features.mask):
        try:
            record = target.stored_record(embedded)
            k = kept[i]
            if k.interactions and record.proxy is not None:
                id_emb = k.id_embedding if k.id_fingerprint == same_space else None
                emb, _ = target.pipeline.regate(
                    record.proxy[None],
                    record.diffusion[None],
                    None if record.anchor is None else record.anchor[None],
                    mask[None],
                    np.array([k.interactions]),
                    None if id_emb is None else id_emb[None],
                )
                record = replace(record, embedding=emb[0], interactions=k.interactions, id_embedding=id_emb)
            if k.posted_at is not None:  # first stored then, not now: created_after answers alike in both packages
                record = replace(record, fields=record.fields | {"posted_at": k.posted_at})
            out[i] = record
        except Exception as exc:  # one bad item never stops the others
            out[i] = exc
    return out


async def _store(target: Served, records: dict[str, object], report: BackfillReport) -> int:
    """Write re-embedded records without overwriting; returns how many were already there (``_keep_takedowns``: no
    take-down is undone by a backfill)."""
    metric, refused, written = target.metrics.reembedded, 0, []
    for item_id, record in records.items():
        if isinstance(record, Exception):
            log.error("re-embedding %s for %s failed: %s", item_id, target.version, record)
            report.failed += 1
            metric.labels(target.version, "failed").inc()
        elif await target.items.put(item_id, record, overwrite=False):
            report.reembedded += 1
            metric.labels(target.version, "reembedded").inc()
            written.append(item_id)
        else:
            refused += 1
            metric.labels(target.version, "present").inc()
    await _keep_takedowns(target, written)
    return refused


async def _keep_takedowns(target: Served, written: list[str]) -> None:
    """Items just written for ``target`` whose kept features are gone were deleted while they were re-embedded (a
    DELETE removes the features with the serving package's copy, before the target's): delete them again, so no
    take-down is undone."""
    if written:
        for item_id, kept in zip(written, await target.items.store.features.exists_many(written)):
            if not kept:
                await target.items.delete(item_id)


async def _refresh(target: Served, changed: dict[str, float], batch: int, report: BackfillReport) -> None:
    """Re-embed for ``target``, over what it holds, the items of ``changed`` (item -> when its content or warm-up was
    last written) whose copy there was written before that; never a warm item or a vector the recommender gave."""
    ids = [i for i in changed if i not in target.items.warm]
    marks = await target.items.store.written_at(ids) if ids else []
    ids = [i for i, mark in zip(ids, marks) if mark is not None and mark[0] < changed[i] and not mark[1]]
    features = target.items.store.features
    for start in range(0, len(ids), batch):
        chunk, written = ids[start : start + batch], []
        kept = await features.get_many(chunk)
        for item_id, record in (await target.graphs.run(reembed, target, chunk, kept)).items():
            if isinstance(record, Exception):
                log.error("refreshing %s for %s failed: %s", item_id, target.version, record)
                report.failed += 1
            elif await target.items.put(item_id, record, overwrite=True):
                report.refreshed += 1
                target.metrics.reembedded.labels(target.version, "refreshed").inc()
                written.append(item_id)
        await _keep_takedowns(target, written)


async def backfill(
    target: Served,
    batch: int = 256,
    progress: Callable[[int, int], None] | None = None,
    max_passes: int = 5,
    changed_since: float | None = None,
) -> BackfillReport:
    """Re-embed every item with kept features that ``target`` does not hold (see the module docstring); with
    ``changed_since`` (a Unix time), also those it holds whose content or warm-up was written since then -- an
    overwrite or a warm-up whose shadow write failed, or that a replica without the shadow took -- so a switch
    never promotes a stale vector. ``progress(n, total)`` is called as items are done. Raises ``StoreUnavailable``
    when Redis fails."""
    store = target.items.store
    report, t0 = BackfillReport(), time.perf_counter()
    if store.features is None:
        return report
    position = await versions.resume_position(store)
    warm = target.items.warm
    for n_pass in range(max_passes):
        ids = await store.features.all_ids()
        cold = [i for i in ids if i not in warm]
        report.total, report.graduated, report.passes = len(ids), len(ids) - len(cold), n_pass + 1
        todo = [i for i in cold if position is None or i > position]
        held, acted, report.no_features, written_before = len(cold) - len(todo), 0, 0, report.reembedded
        for start in range(0, len(todo), batch):
            chunk = todo[start : start + batch]
            present = await store.exists_many(chunk)
            need = [i for i, h in zip(chunk, present) if not h]
            held += len(chunk) - len(need)
            kept = await store.features.get_many(need)
            report.no_features += len(need) - len(kept)
            acted += len(kept)
            held += await _store(target, await target.graphs.run(reembed, target, need, kept), report)
            if n_pass == 0:
                await versions.save_position(store, chunk[-1], report.reembedded)
            report.present = held - written_before
            target.metrics.rollout_progress.labels(target.version).set(report.covered)
            if progress is not None:
                progress(len(chunk), len(todo))
        report.present = held - written_before
        if acted == 0 and position is None:  # a pass over every item that found nothing it could add: done
            break
        # catch-up passes look at every item: shadow writes may have failed anywhere, and IDs written since an
        # interrupted run's position may sort before it
        position = None
    if changed_since is not None:
        await _refresh(target, await store.features.changed_since(changed_since), batch, report)
    report.seconds = time.perf_counter() - t0
    await versions.mark_complete(store, report.reembedded)
    target.metrics.rollout_progress.labels(target.version).set(report.covered)
    return report


async def carry_given(source: Served, target: Served, report: BackfillReport) -> None:
    """The recommender's vectors the source package was given, given to the target when both serve one ID space
    (after the backfill, so an item re-embedded for the target graduates there with its new experts' outputs);
    an item the target knows as warm keeps the target's vector. Another space: none is carried, and it says so."""
    given = await source.items.given_entries()
    if source.package.id_fingerprint != target.package.id_fingerprint:
        report.id_space_changed, report.id_vectors_dropped = True, len(given)
        log.warning(
            "model package %s serves another ID space (%s, was %s): its stored new items are re-embedded into "
            "it from their content; the %d item vectors synced from the old recommender are not carried over "
            "-- sync the new recommender's export (coldproxy sync-ids)",
            target.version,
            target.package.id_fingerprint,
            source.package.id_fingerprint,
            len(given),
        )
        return
    for item_id, vector in given.items():
        if item_id not in target.items.warm:
            await target.items.give(item_id, vector)
            report.id_vectors_carried += 1


async def backfill_bundles(source: Served, target: Served, report: BackfillReport) -> None:
    """Bundles POSTed for the serving bundle recommender, created for the new one from their stored members
    (never overwriting). Nothing to do when both serve the same bundle package: its keys stay as they are."""
    old, new = source.bundles, target.bundles
    if old is None or new is None or old.version == new.version:
        return
    for bundle_id in await old.catalog.store.all_ids():
        record = await old.catalog.store.get_record(bundle_id)
        members = (record.fields.get("members") or "").split(",") if record is not None else []
        try:
            await new.create(bundle_id, [m for m in members if m], False, max(1, len(members)))
            report.bundles_reembedded += 1
            if await old.catalog.store.get_record(bundle_id) is None:  # deleted meanwhile: no take-down undone
                await new.catalog.delete(bundle_id)
        except Conflict:
            report.bundles_present += 1
        except ColdproxyError as exc:
            log.error("bundle %s cannot be carried over to %s: %s", bundle_id, new.version, exc.detail)
            report.bundles_failed += 1


class Shadow:
    """The package being rolled out, fed every item the serving package stores (see the module docstring)."""

    def __init__(self, target: Served, source_bundles=None):
        self.target, self.source_bundles = target, source_bundles

    async def write(self, item_id: str, overwrite: bool, features: np.ndarray) -> None:
        """Embed and store one item for the target; a failure is logged and counted, not the POST's: the
        backfill's catch-up pass re-embeds whatever the target lacks."""
        t, version = self.target, self.target.version
        if item_id in t.items.warm:
            return
        try:
            kept = {item_id: KeptFeatures(features)}
            record = (await t.graphs.run(reembed, t, [item_id], kept))[item_id]
            if isinstance(record, Exception):
                raise record
            await t.items.put(item_id, record, overwrite)
            t.drift.observe(record.embedding, None, None)
            t.metrics.reembedded.labels(version, "shadow").inc()
        except (ColdproxyError, ValueError, RuntimeError) as exc:
            log.error("shadow write of %s for %s failed (the backfill's catch-up covers it): %s", item_id, version, exc)
            t.metrics.reembedded.labels(version, "shadow_failed").inc()

    async def write_bundle(self, bundle_id: str, item_ids: list[str], overwrite: bool, max_members: int) -> None:
        """A bundle POSTed to the serving bundle recommender, created for the target's too (when it differs)."""
        new = self.target.bundles
        if new is None or new.version == getattr(self.source_bundles, "version", None):
            return
        try:
            await new.create(bundle_id, item_ids, overwrite, max_members)
        except ColdproxyError as exc:
            log.warning("bundle %s not written for %s: %s", bundle_id, new.version, exc.detail)

    async def take_down(self, item_id: str) -> bool:
        """An item deleted from the serving package, deleted from (or hidden in) the target's too, after it; whether
        the target held it. Errors are the DELETE's: a retry reaches the target even when the serving one is done."""
        return await self.target.items.delete(item_id)

    async def take_down_bundle(self, bundle_id: str) -> bool:
        new = self.target.bundles
        if new is None or new.version == getattr(self.source_bundles, "version", None):
            return False
        return await new.catalog.delete(bundle_id)


class Rollout:
    """A package rolled out beside the serving one: shadow writes and a backfill, then (unless ``shadow_only``)
    the switch through ``switch(target)`` once it holds ``switch_fraction`` of the items."""

    def __init__(
        self, source: Served, target: Served, switch: Callable, batch: int, switch_fraction: float, shadow_only: bool
    ):
        self.source, self.target, self.switch = source, target, switch
        self.batch, self.switch_fraction, self.shadow_only = batch, switch_fraction, shadow_only
        self.state, self.report, self.error = "backfilling", BackfillReport(), None
        self.done = asyncio.Event()
        self.task: asyncio.Task | None = None
        self.started_at = time.time()  # the switch's catch-up re-embeds what changed since (minus CLOCK_SKEW_S)

    def start(self) -> None:
        self.source.shadow = Shadow(self.target, self.source.bundles)
        self.target.metrics.serving_version.labels(self.target.version, "candidate").set(1)
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        try:
            self.report = await backfill(self.target, self.batch)
            await carry_given(self.source, self.target, self.report)
            await backfill_bundles(self.source, self.target, self.report)
            log.info("backfill of %s: %s", self.target.version, self.report.as_dict())
            if self.shadow_only:
                self.state = "shadow"
            elif self.report.covered + 1e-9 < self.switch_fraction:
                self.state, self.error = (
                    "failed",
                    (
                        f"the new package holds {self.report.covered:.4f} of the stored "
                        "items, below COLDPROXY_ROLLOUT_SWITCH_FRACTION "
                        f"{self.switch_fraction}"
                    ),
                )
            else:
                self.state = "switching"
                await self.switch(self)
                self.state = "switched"
        except Exception as exc:
            log.exception("rollout of %s failed; still serving %s", self.target.version, self.source.version)
            self.state, self.error = "failed", public_reason(exc)  # shown by GET /v1/model, to anyone
        finally:
            if self.state == "failed":
                self.source.shadow = None
                self.target.metrics.serving_version.remove(self.target.version, "candidate")
                await self.target.close()
            self.done.set()

    def status(self) -> dict:
        return {
            "version": self.target.version,
            "state": self.state,
            "error": self.error,
            "backfill": self.report.as_dict(),
        }

    async def cancel(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        self.source.shadow = None
