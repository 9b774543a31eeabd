"""What an online service serves with, and how it follows the pipeline: the registry's champion
and the current serving snapshot, loaded next to what is serving and swapped by one reference.

:class:`ServingState` is the service's state without BentoML: the model, the online store, why
either cannot (re)load, and the readiness check built on them. :meth:`ServingState.follow` is
the loop of the follower thread (:class:`Follower`): every ``BLUEPRINT_SERVING_POLL_SECONDS``
it looks at the champion and the snapshot's ``CURRENT`` pointer and loads what changed. At
start-up the online state is the current snapshot plus the events and labels logged after the
snapshot's last day.
"""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from orchestration.lib.features.pseudonymize import key_fingerprint
from orchestration.lib.registry import registry
from orchestration.lib.serving.clock import ServiceClock
from orchestration.lib.serving.online_features import OnlineFeatureStore
from orchestration.lib.serving.prediction_log import iter_records, rotation_token
from orchestration.lib.serving.scoring import ScoringModel, load_scoring_model
from orchestration.lib.serving.served import ServedColumns
from orchestration.lib.serving.snapshot import SnapshotError, current_snapshot
from orchestration.settings import Settings

logger = logging.getLogger("bentoml.scorer")


class NotReady(Exception):
    """No request can be scored now; the message says why."""


class ServingState:
    """The champion and the online store a service scores with; thread-safe."""

    def __init__(self, settings: Settings, columns: ServedColumns, key: bytes) -> None:
        self.settings = settings
        self.columns = columns
        self._key_fingerprint = key_fingerprint(key)
        self.model: ScoringModel | None = None
        self.store: OnlineFeatureStore | None = None
        serving = settings.usecase.serving
        self.clock = ServiceClock(settings.serving_clock, serving.forward_skew,
                                  serving.back_window)
        """Now, and how far from it what arrives may be."""
        self.problems: dict[str, str] = {}
        """What keeps the model or the store from (re)loading: shown by /readyz."""
        self.frozen_objects = 0
        """Objects `gc.freeze` set aside after the last load (see `settle_heap`)."""
        self.features_lock = threading.Lock()
        """Held while a request adds events or labels to the store, and to swap the store."""
        self.journal: list[dict[str, Any]] | None = None
        """While a new snapshot loads: the events and labels added to the old store meanwhile."""
        self.pending_model: ScoringModel | None = None
        """The registry's champion, loaded, waiting for a snapshot of its feature definitions
        (the two are swapped together)."""
        self.follower_alive: Callable[[], bool] | None = None
        """Whether the follower thread still runs (set when it starts)."""
        self._refused_snapshot: tuple[str, str | None, str] | None = None
        """A snapshot not swapped in (its version, the champion it did not match, why): not
        loaded again until another champion comes."""
        self._in_flight = 0
        self._idle = threading.Condition(self.features_lock)
        self.rebuilding: str | None = None
        """Why the store holds events no log has (a request failed after they joined it): the
        store is not served from until the follower has rebuilt it from the snapshot and the
        logs, as a restart would."""
        self._staging_checked: tuple[OnlineFeatureStore | None, bool] = (None, False)
        """The last store whose staging was compared with the declaration's, and the answer
        (a store's staging never changes: compared once, not on every request's check)."""

    # -- readiness -----------------------------------------------------------------------------

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Whether events can be scored, with what, and why not."""
        model, store = self.model, self.store
        state: dict[str, Any] = {
            "ready": False,
            "usecase": self.columns.usecase,
            "model_version": model.version if model else None,
            "snapshot_version": store.snapshot_version if store else None,
            "gc_frozen_objects": self.frozen_objects,
        }
        if self.problems:
            state["problems"] = dict(self.problems)
        reason = self._not_ready(model, store)
        if reason is None:
            state["ready"] = True
            return True, state
        state["reason"] = reason
        return False, state

    def _not_ready(
        self, model: ScoringModel | None, store: OnlineFeatureStore | None
    ) -> str | None:
        if self.rebuilding is not None:
            return f"rebuilding the online state from the snapshot and the logs: {self.rebuilding}"
        if self.follower_alive is not None and not self.follower_alive():
            return "the follower thread stopped (it loads champions and snapshots): restart"
        if model is not None and "model" in self.problems:
            return (f"serving {model.version}, but the registry's champion cannot be loaded: "
                    f"{self.problems['model']}")
        pending = self.pending_model  # read once: the follower may clear it meanwhile
        if pending is not None and store is not None and (
            pending.feature_definitions_hash != store.definitions_hash
        ):
            return self._mismatch(pending, store)
        if model is None:
            return self.problems.get("model", "no champion model loaded yet")
        if store is None:
            return self.problems.get("snapshot", "the online state is not loaded yet")
        if model.feature_definitions_hash != store.definitions_hash:
            return self._mismatch(model, store)
        if model.facts.pseudonymization_key_fingerprint != self._key_fingerprint:
            return f"champion {model.version} saw pseudonyms of another pseudonymization key"
        if not self._stages_as_declared(store):
            return (
                f"snapshot {store.snapshot_version} stages requests otherwise than the "
                f"declaration of {self.columns.usecase} (its source contracts changed): "
                "materialize to publish a snapshot of the declared contracts"
            )
        return None

    @staticmethod
    def _mismatch(model: ScoringModel, store: OnlineFeatureStore) -> str:
        return (f"champion {model.version} was trained on feature definitions "
                f"{model.feature_definitions_hash[:12]}, the online state computes "
                f"{store.definitions_hash[:12]}: publish a matching snapshot or roll back")

    def _stages_as_declared(self, store: OnlineFeatureStore) -> bool:
        checked, same = self._staging_checked
        if checked is not store:
            same = self.columns.same_requests(store.definitions.features.staging)
            self._staging_checked = (store, same)
        return same

    def diverged(self, why: str) -> None:
        """A request failed after its events joined the store, before they were logged: the
        store holds what no log has, which would change other events' features and vanish on a
        restart. Stop serving from it (readiness says why) until the follower has rebuilt it."""
        logger.error("the online state diverged from the logs (%s): rebuilding it", why)
        with self.features_lock:
            self.rebuilding = why

    @contextmanager
    def in_flight(self) -> Iterator[None]:
        """A request's work on the store, from its check to its log row on disk: refused while
        the store is rebuilt, and waited for by the rebuild (which must read every log row of
        what the old store accepted)."""
        with self.features_lock:
            if self.rebuilding is not None:
                raise NotReady(f"rebuilding the online state: {self.rebuilding}")
            self._in_flight += 1
        try:
            yield
        finally:
            with self.features_lock:
                self._in_flight -= 1
                self._idle.notify_all()

    def _wait_for_requests(self, timeout_s: float = 60.0) -> None:
        with self.features_lock:
            self._idle.wait_for(lambda: self._in_flight == 0, timeout=timeout_s)

    def ready_model(self) -> ScoringModel:
        """The champion, if events can be scored now (raises `NotReady` saying why)."""
        ready, state = self.readiness()
        if not ready:
            raise NotReady(state["reason"])
        assert self.model is not None
        return self.model

    # -- following the registry and the snapshots ----------------------------------------------

    def follow(self, stop: threading.Event, on_rotation: Callable[[], None]) -> None:
        """The follower thread: load what changed every poll, until ``stop`` is set.
        ``on_rotation`` closes the service's log files when `blueprint replay` asks."""
        seen = rotation_token(self.settings.serving_dir)
        while True:
            try:
                token = rotation_token(self.settings.serving_dir)
                if token != seen:
                    seen = token
                    on_rotation()
                self.follow_once()
            except Exception:  # the follower must outlive any one poll's failure
                logger.exception("the follower's poll failed; it polls again")
            if stop.wait(self.settings.serving_poll_seconds):
                return

    def follow_once(self) -> None:
        """Load a new champion or snapshot if there is one; a failure keeps what is loaded
        serving and is shown by the readiness check."""
        loaded = (self.model, self.store)
        for name, follow in (("model", self._follow_champion), ("snapshot", self._follow_snapshot)):
            try:
                follow()
                self.problems.pop(name, None)
            except Exception as problem:  # keep serving what is loaded; /readyz says why
                if self.problems.get(name) != str(problem):
                    logger.warning("cannot follow the %s: %s", name, problem)
                self.problems[name] = str(problem)
        if any(now is not before for now, before in zip((self.model, self.store), loaded,
                                                         strict=True)):
            self.frozen_objects = settle_heap()

    def _follow_champion(self) -> None:
        """Serve the registry's champion; one of other feature definitions than the online
        state's waits (pending) for a snapshot of its definitions, swapped in with it."""
        version = registry.champion_version(self.settings)
        if self.model is not None and self.model.version == version:
            self.pending_model = None  # served already (a rollback to it, say)
            return
        pending = self.pending_model
        if pending is not None and pending.version == version:
            store = self.store  # a rebuild may have brought the snapshot it waits for
            if store is not None and store.definitions_hash == pending.feature_definitions_hash:
                self.model, self.pending_model = pending, None
            return
        model = load_scoring_model(version, self.settings)
        store = self.store
        if store is None or store.definitions_hash == model.feature_definitions_hash:
            previous, self.model, self.pending_model = self.model, model, None
            logger.info(
                "serving model %s (was %s)", version, previous.version if previous else None
            )
        else:
            self.pending_model, self._refused_snapshot = model, None
            logger.info("champion %s waits for a snapshot of its feature definitions", version)

    def _follow_snapshot(self) -> None:
        version = current_snapshot(self.settings.snapshot_dir).version
        store = self.store
        if self.rebuilding is not None:
            self._wait_for_requests()
            served = store.snapshot_version if store is not None else None
            rebuilt = self.start_store(served)  # the served pair's snapshot; a newer one next
            with self.features_lock:
                self.store, self.rebuilding = rebuilt, None
            logger.info("rebuilt the online state: snapshot %s and the logs",
                        rebuilt.snapshot_version)
        elif store is None:
            self.store = self.start_store()
            logger.info("serving snapshot %s", self.store.snapshot_version)
        elif store.snapshot_version != version:
            target = self.pending_model or self.model
            refused = self._refused_snapshot
            if refused is not None and refused[:2] == (version, target and target.version):
                raise SnapshotError(refused[2])  # known not to match: not loaded again
            with self.features_lock:
                self.journal = []
            try:
                new = OnlineFeatureStore.from_snapshot(self.settings.snapshot_dir,
                                                       carry_over=store)
                if target is not None and (
                    new.definitions_hash != target.feature_definitions_hash
                ):
                    why = (f"snapshot {version} computes feature definitions "
                           f"{new.definitions_hash[:12]}, champion {target.version} was trained "
                           f"on {target.feature_definitions_hash[:12]}: serving snapshot "
                           f"{store.snapshot_version} until a champion of its definitions")
                    self._refused_snapshot = (version, target.version, why)
                    raise SnapshotError(why)
                _prepare(new)
                assert new.snapshot_last_day is not None
                self.clock.observe_snapshot(new.snapshot_last_day)
                with self.features_lock:
                    if self.rebuilding is not None:
                        return  # the old store diverged meanwhile: rebuilt from the logs next
                    self._replay_journal(new)
                    self.store = new
                    if self.pending_model is not None:  # swapped together
                        self.model, self.pending_model = self.pending_model, None
                        logger.info("serving model %s with its snapshot", self.model.version)
            finally:
                with self.features_lock:
                    self.journal = None
            logger.info(
                "serving snapshot %s (was %s)", new.snapshot_version, store.snapshot_version
            )

    def start_store(self, version: str | None = None) -> OnlineFeatureStore:
        """The current snapshot (or ``version``, if it is still there) plus the events and
        labels logged after its last day."""
        columns = self.columns
        folder = self.settings.snapshot_dir
        if version is not None and (folder / version).is_dir():
            folder = folder / version
        store = OnlineFeatureStore.from_snapshot(folder)
        assert store.snapshot_last_day is not None
        last_day = store.snapshot_last_day
        self.clock.observe_snapshot(last_day)
        events = store.add_staged_events(self._observed(_after(
            iter_records(self.settings.prediction_log_dir, include_open=True),
            columns.event_time, last_day,
        )))
        labels = store.add_staged_labels(_after(
            iter_records(self.settings.label_log_dir, include_open=True),
            columns.label_time, last_day,
        ))
        logger.info(
            "restored %d events and %d labels after %s from the logs", events, labels, last_day
        )
        _prepare(store)
        return store

    def _observed(self, events: Iterable[dict[str, Any]]) -> Iterable[dict[str, Any]]:
        """``events``, each one's time shown to the clock (a restart's clock is where the
        service left it)."""
        for event in events:
            when = event[self.columns.event_time]
            self.clock.observe(when if isinstance(when, datetime)
                               else datetime.fromisoformat(str(when)))
            yield event

    def _replay_journal(self, store: OnlineFeatureStore) -> None:
        """Add to ``store`` what requests added to the old store while it loaded."""
        assert store.snapshot_last_day is not None
        for entry in self.journal or []:
            if "events" in entry:
                store.add_staged_events(
                    row for row in entry["events"]
                    if row[self.columns.partition_date] > store.snapshot_last_day
                )
            else:
                store.add_staged_labels(entry["labels"])


class Follower:
    """The thread that keeps a `ServingState` following the pipeline (`ServingState.follow`)."""

    def __init__(self, state: ServingState, on_rotation: Callable[[], None]) -> None:
        self._stop = threading.Event()
        self._state = state
        self._thread = threading.Thread(
            target=state.follow, args=(self._stop, on_rotation), name="follower", daemon=True
        )

    def start(self) -> Follower:
        self._thread.start()
        self._state.follower_alive = self._thread.is_alive
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop following: wait for the load under way, at most ``timeout_s``."""
        self._stop.set()
        self._thread.join(timeout=timeout_s)


def _after(records: Iterable[dict[str, Any]], time_column: str, day: Any) -> Iterable[dict]:
    return (r for r in records if datetime.fromisoformat(r[time_column]).date() > day)


def settle_heap() -> int:
    """Keep what the service loaded out of the cyclic garbage collector's way.

    The imports, the model and the online store (hundreds of thousands of objects on the
    default world) live for hours. Each full collection walks all of them and holds the GIL
    meanwhile: a pause in which no request moves, which shows in the latency's tail. After each
    load (the start, a new champion, a new snapshot) the follower collects once and freezes
    what is left (`gc.freeze`), so later collections walk only what requests allocated since.
    What was frozen before is unfrozen first, so a replaced store's cycles are collected: one
    pause per load, not every few thousand requests. Refcounting frees frozen objects as usual
    (docs/OPERATING_NOTES.md has the measurements).

    Returns how many objects were frozen: counted here, once, because `gc.get_freeze_count`
    walks the whole frozen list, far too slow for a request's readiness check.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def _prepare(store: OnlineFeatureStore) -> None:
    """Compute the entity-day rows of the day after the snapshot now, not in a request."""
    assert store.snapshot_last_day is not None
    store.prepare_day(store.snapshot_last_day + timedelta(days=1))
