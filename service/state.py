"""What a running service holds: the app-wide ``State`` (settings, metrics, auth, the current ``Serving`` of
``service.serving``, and reload, canary, promote and rollout between packages). Routes reach it through
``service.api.deps``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from pathlib import Path

from anyio import CapacityLimiter

from coldproxy.config import ServiceSettings, usable_cores
from coldproxy.errors import Conflict, NotReady, PackageError, StoreUnavailable
from coldproxy.limits import MAX_DIM
from coldproxy.package import package_version
from service import bundle_wait, refit_wait
from service.auth import KeyRing, RateLimiter, check_exposure
from service.bundle_serving import BundleServing
from service.metrics import Metrics
from service.rollout import CLOCK_SKEW_S, Rollout, backfill
from service.serving import Serving
from service.storage.versions import expire_version, persist_version

log = logging.getLogger("coldproxy")


class State:
    """Settings, metrics, auth and the current ``Serving``; routes get it through ``AppState``."""

    def __init__(self, settings: ServiceSettings):
        self.settings = settings
        self.metrics = Metrics()
        self.keys = KeyRing([k for k in [settings.api_key, *settings.api_keys] if k], settings.api_keys_file)
        self.admin_keys = KeyRing(settings.admin_api_keys, settings.admin_api_keys_file)
        check_exposure(settings, self.keys.enabled or self.admin_keys.enabled)
        self.limiter = RateLimiter(settings.rate_limit_rps, settings.rate_limit_burst)
        self.serving: Serving | None = None
        self.rollout: Rollout | None = None  # a package being rolled out beside the serving one
        self.heavy_reads: CapacityLimiter | None = None  # long rankings on worker threads, a core's worth each
        self._reload_lock = asyncio.Lock()
        self._background: set[asyncio.Task] = set()  # old packages retiring, the bundle package awaited
        self.awaiting_bundles = False  # a watcher loads the bundle package once its training writes it

    @property
    def ready(self) -> bool:
        return self.serving is not None

    def vector_dim(self) -> int:
        """The largest vector dimension served now (what a request's vectors may have): ``MAX_DIM`` before a
        package is loaded."""
        sv = self.serving
        if sv is None:
            return MAX_DIM
        return max(sv.items.dim, sv.bundles.catalog.dim if sv.bundles is not None else 0)

    def _keep(self, task: asyncio.Task) -> None:
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def start(self) -> None:
        self.heavy_reads = CapacityLimiter(usable_cores())
        self.serving = await Serving.open(self.settings, self.metrics)
        self.metrics.serving_version.labels(self.serving.version, "serving").set(1)
        if bundle_wait.training(self.settings.bundle_package_dir) is not None:
            self._keep(asyncio.create_task(bundle_wait.watch(self)))
        if refit_wait.status(self.settings.package_dir) is not None:
            self._keep(asyncio.create_task(refit_wait.watch(self)))
        if self.settings.candidate_package_dir is not None:
            candidate = await Serving.open(
                self.settings, self.metrics, self.settings.candidate_package_dir, bundles=False
            )
            why_not = self._can_reembed(self.serving, candidate)
            if why_not is not None:
                await candidate.close()
                await self.serving.close()
                raise PackageError(f"candidate package {candidate.version} cannot run in shadow: {why_not}")
            self._start_rollout(self.serving, candidate, shadow_only=True)

    def _can_reembed(self, old: Serving, new: Serving) -> str | None:
        """Why ``new`` cannot take ``old``'s stored items over, or None when it can."""
        if self.settings.keep_features == "off":
            return "COLDPROXY_KEEP_FEATURES is off"
        if old.items.store.features is None:
            return "the store keeps nothing (no Redis)"
        if old.package.encoder_fingerprint != new.package.encoder_fingerprint:
            return "the new package's encoders differ from the serving one's: re-POST the new items"
        return None

    def _start_rollout(self, old: Serving, new: Serving, shadow_only: bool) -> Rollout:
        s = self.settings
        self.rollout = Rollout(old, new, self._switch_rollout, s.reembed_batch, s.rollout_switch_fraction, shadow_only)
        self.rollout.start()
        return self.rollout

    async def reload(self) -> tuple[str, str, dict | None]:
        """Load the model package directory again. When its encoders are the serving package's, roll it out:
        re-embed every stored item for it (``service.rollout``) while the old one serves, and switch once that
        is done (waiting up to ``rollout_wait_s`` for it); otherwise switch as soon as it is ready.

        Raises ``PackageError``/``StoreUnavailable`` and keeps serving the old package on failure, ``Conflict``
        while another rollout is under way. Returns (previous version, serving version, rollout status or None).
        """
        async with self._reload_lock:
            old = self.serving
            if self.rollout is not None and self.rollout.state in ("backfilling", "switching"):
                raise Conflict(f"a rollout to {self.rollout.target.version} is under way; GET /v1/model shows it")
            if old is not None and package_version(self.settings.package_dir) == old.version:
                await self._attach_bundles(old)  # a bundle package written since start-up is loaded all the same
                return old.version, old.version, None  # unchanged: nothing opened (a second package is 2x the memory)
            new = await Serving.open(self.settings, self.metrics)
            if old is not None and new.version == old.version:
                await new.close()
                return old.version, old.version, None
            if self.rollout is not None:  # a shadow candidate, or a finished rollout: this reload replaces it
                await self._drop_candidate()
            why_not = self._can_reembed(old, new) if old is not None and self.settings.rollout_reembed else "off"
            if why_not is not None:
                if old is not None and self.settings.rollout_reembed:
                    log.warning("switching to %s without re-embedding the stored items: %s", new.version, why_not)
                await self._switch(new)
                return (old.version if old else ""), new.version, None
            rollout = self._start_rollout(old, new, shadow_only=False)
        try:
            await asyncio.wait_for(asyncio.shield(rollout.done.wait()), self.settings.rollout_wait_s)
        except TimeoutError:
            pass
        if rollout.state == "failed":
            raise StoreUnavailable(f"rollout of {new.version} failed, still serving {old.version}: {rollout.error}")
        return old.version, self.serving.version, rollout.status()

    async def attach_bundles(self) -> bool:
        """Load the bundle package into the serving package when it has none yet (``service.bundle_wait``)."""
        async with self._reload_lock:
            return self.serving is not None and await self._attach_bundles(self.serving)

    async def _attach_bundles(self, sv: Serving) -> bool:
        d = self.settings.bundle_package_dir
        if sv.bundles is not None or d is None or not (Path(d) / "manifest.json").exists():
            return False
        sv.bundles = await BundleServing.open(self.settings, self.metrics, sv.admission)
        log.info("bundle model package %s loaded beside %s", sv.bundles.version, sv.version)
        return True

    async def promote(self) -> tuple[str, str, dict]:
        """Serve the shadow candidate to everyone. ``Conflict`` when there is none, it is still backfilling, or
        another promote is switching to it: the state is claimed before the first await, so of two concurrent
        promotes one switches and the other gets 409 (a second switch would retire the package now serving)."""
        rollout = self.rollout
        if rollout is None or rollout.state != "shadow" or not rollout.shadow_only:
            raise Conflict(
                "no candidate package with a complete backfill to promote "
                f"({'state ' + rollout.state if rollout else 'none configured'})"
            )
        previous, rollout.state = self.serving.version, "switching"
        try:
            await self._switch_rollout(rollout)
        except BaseException:
            rollout.state = "shadow"  # nothing switched: it can be promoted again
            raise
        rollout.state = "switched"
        return previous, rollout.target.version, rollout.status()

    async def _drop_candidate(self) -> None:
        rollout, self.rollout = self.rollout, None
        await rollout.cancel()
        if rollout.state in ("backfilling", "shadow"):
            self.metrics.serving_version.remove(rollout.target.version, "candidate")
            await rollout.target.close()

    async def _switch_rollout(self, rollout: Rollout) -> None:
        """The rollout's backfill is complete: catch up once more (an item written since -- by a replica without the
        shadow writes, or whose shadow write failed -- is re-embedded now, not lost when the old keys expire), then
        serve its package; the old version's keys expire later, after a last catch-up for the requests still in
        flight on the old package when it was switched."""
        async with self._reload_lock:
            if self.rollout is not rollout or rollout.target is self.serving:
                raise Conflict(f"the rollout to {rollout.target.version} was replaced or is serving already")
            await persist_version(rollout.target.items.store)  # a roll-back: its keys had been set to expire
            caught = await backfill(
                rollout.target, self.settings.reembed_batch, changed_since=rollout.started_at - CLOCK_SKEW_S
            )
            log.info(
                "catch-up before switching to %s: %d items re-embedded, %d changed since the backfill began "
                "re-embedded again",
                rollout.target.version,
                caught.reembedded,
                caught.refreshed,
            )
            rollout.report.refreshed += caught.refreshed
            self.metrics.serving_version.remove(rollout.target.version, "candidate")
            await self._switch(rollout.target, expire_old=True)

    async def _switch(self, new: Serving, expire_old: bool = False) -> None:
        if new is self.serving:  # retiring it would expire the keys of the package that serves
            raise Conflict(f"model package {new.version} is serving already")
        old, self.serving = self.serving, new
        self.metrics.serving_version.labels(new.version, "serving").set(1)
        if old is not None:
            self.metrics.serving_version.remove(old.version, "serving")
            task = asyncio.create_task(self._retire(old, new, expire_old))
            self._keep(task)
        log.info("now serving model package %s (was %s)", new.version, old.version if old else None)

    async def _retire(self, old: Serving, new: Serving, expire_old: bool) -> None:
        try:
            switched_at = time.time()
            await asyncio.sleep(self.settings.reload_grace_s)  # let requests that hold it finish
            if expire_old:
                old.shadow = None  # what those requests wrote:
                caught = await backfill(new, self.settings.reembed_batch, changed_since=switched_at - CLOCK_SKEW_S)
                n = await expire_version(old.items.store, self.settings.rollout_keep_old_s)
                log.info(
                    "the %d items of %s expire in %.0f s (%d written meanwhile re-embedded for %s)",
                    n,
                    old.version,
                    self.settings.rollout_keep_old_s,
                    caught.reembedded,
                    new.version,
                )
        except Exception:
            log.exception("retiring %s", old.version)
        finally:
            old.shadow = None
            await old.close()

    async def stop(self) -> None:
        if self.rollout is not None:
            await self._drop_candidate()
        serving, self.serving = self.serving, None
        background = list(self._background)
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        if serving is not None:
            await serving.close()

    def serving_for(self, user_id: str | None) -> Serving:
        """The package that answers ``user_id``'s rank and recommend requests: the candidate for canary users
        (a stable hash of the ID below ``canary_fraction``) once its backfill is done, else the serving one (and
        always for a request by vector, ``user_id`` None: the vector was checked against the serving space)."""
        serving, rollout = self.serving, self.rollout
        if serving is None:
            raise NotReady("no model package loaded yet")
        if (
            user_id is not None
            and rollout is not None
            and rollout.state == "shadow"
            and self.settings.canary_fraction > 0
            and canary_bucket(user_id) < self.settings.canary_fraction
        ):
            return rollout.target
        return serving


def canary_bucket(user_id: str) -> float:
    """A user's place in [0, 1), the same on every replica and every restart."""
    return int.from_bytes(hashlib.blake2b(user_id.encode(), digest_size=8).digest(), "big") / 2**64
