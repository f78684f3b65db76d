"""The imperative shell around `rank`: one SQL round trip for the history, cached neighbour lists,
missing ones fetched in one batched vector query, and the in-memory popular list when anything fails.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from inference.cache import NeighbourCache, NeighbourList, PopularCache
from inference.config import RankConfig, ServiceSettings
from inference.health import DependencyState, Health, classify, describe
from inference.metrics import ServiceMetrics
from inference.popular import PopularList
from inference.ranking import NormalizedPopularity, Scored, normalize_popularity, rank_arrays, rank_popular
from inference.sources import HistorySource, VectorSource, open_version_store
from inference.versions import (
    UNVERSIONED,
    ModelWatcher,
    NoVersions,
    ServedExperiment,
    ServedModel,
    VersionSource,
    rank_config_of,
)


@dataclass(frozen=True)
class Outcome:
    """A recommendation and how it was made: kind is personalized, cold_start or fallback; the version
    that answered, and the experiment and arm that chose it (None outside an experiment)."""

    items: list[Scored]
    kind: str
    fallback_reason: str | None = None
    version: str = UNVERSIONED
    experiment: str | None = None
    arm: str | None = None


log = logging.getLogger("inference.service")


class Recommender:
    """Answers recommendations for user ids; never raises for a dependency failure."""

    def __init__(self, settings: ServiceSettings, history: HistorySource,
                 vectors_factory: Callable[[], VectorSource], metrics: ServiceMetrics,
                 clock: Callable[[], float] = time.monotonic, versions: VersionSource | None = None,
                 version_vectors: Callable[[Any, RankConfig], VectorSource] | None = None):
        self.settings = settings
        self.history_source = history
        self.metrics = metrics
        self._clock = clock
        self._content_factory = vectors_factory
        self.model = ServedModel(UNVERSIONED, settings.rank, vectors_factory, settings, clock)
        self._version_vectors = version_vectors or open_version_store
        self.experiment: ServedExperiment | None = None
        self.watcher = ModelWatcher(versions or NoVersions(), self._build_model, self._install_model,
                                    lambda: self.model, self._warm_switch, settings.model_poll_seconds,
                                    install_experiment=self._install_experiment,
                                    current_experiment=lambda: self.experiment)
        self.popular_cache = PopularCache(settings.popular_ttl_seconds, clock=clock,
                                          snapshot_path=settings.popular_snapshot or None)
        self.health = Health(metrics.ready.set, lambda: bool(self.popular_cache.items))
        self.popular_list = PopularList(self.popular_cache, lambda: history.popular(settings.popular_size),
                                        lambda exc: self._mark("sql", exc))
        self.warming = False
        self.warm_thread: threading.Thread | None = None
        self._reported_bytes = -1

    # -- the model served -------------------------------------------------------------------------
    @property
    def neighbour_cache(self) -> NeighbourCache:
        """The neighbour cache of the model in use."""
        return self.model.cache

    def _build_model(self, version: Any) -> ServedModel:
        """The answering parts of a version (None: the unversioned content vectors)."""
        if version is None:
            return ServedModel(UNVERSIONED, self.settings.rank, self._content_factory, self.settings, self._clock)
        rank_config = rank_config_of(version, self.settings.rank)
        return ServedModel(version.name, rank_config, lambda: self._version_vectors(version, rank_config),
                           self.settings, self._clock, version_id=version.id)

    def _install_model(self, model: ServedModel) -> None:
        self.model = model  # one reference assignment: a request holds either the old model or the new

    def _install_experiment(self, experiment: ServedExperiment | None) -> None:
        self.experiment = experiment  # one reference assignment, as for the model

    def _warm_switch(self, model: ServedModel) -> int:
        """Before a switch: open the new model's vectors and fetch the lists of the most watched movies
        (MODEL_SWITCH_WARM of them), so the first requests on it do not all miss."""
        count = min(self.settings.switch_warm, model.cache.max_size)
        if count <= 0:
            model.vectors()
            return 0
        ids = [m for m, _ in self.popular_cache.items[:count]] or [m for m, _ in self.history_source.popular(count)]
        return self._fill(model, ids)

    def _fill(self, model: ServedModel, ids: Sequence[str], stop: Callable[[], bool] = lambda: False) -> int:
        """Fetch the lists of `ids` that `model`'s cache lacks, 200 a query, until `stop()` says so;
        returns how many were fetched."""
        fetched = 0
        for start in range(0, len(ids), 200):
            if stop():
                break
            _, missing = model.cache.get_many(ids[start:start + 200])
            if missing:
                fetched += len(self._fetch(model, missing))
        return fetched

    # -- dependencies -------------------------------------------------------------------------------
    @property
    def state(self) -> dict[str, DependencyState]:
        """The last outcome seen of each dependency (`inference.health`)."""
        return self.health.state

    def _mark(self, name: str, exc: BaseException | None) -> None:
        self.health.mark(name, exc)

    def set_ready(self, ready: bool) -> None:
        """Set the recommender_ready gauge (written only when it changes)."""
        self.health.set_ready(ready)

    def vectors(self) -> VectorSource:
        """The vector source of the model in use (opened on first use; retried after a short pause)."""
        return self.model.vectors()

    def popular(self) -> NormalizedPopularity:
        """The held popular list, normalized (`inference.popular.PopularList`)."""
        return self.popular_list.current()

    @property
    def popular_thread(self) -> threading.Thread | None:
        """The background reload of the popular list, if one was started."""
        return self.popular_list.thread

    def neighbours(self, movie_ids: Sequence[str], model: ServedModel | None = None) -> dict[str, NeighbourList]:
        """Neighbour lists of the ids in `model` (default: the one in use): cached ones, plus the missing
        ones in one batched query."""
        model = model or self.model
        store = model.vectors()
        model.cache.check_version(lambda: store.version)  # drops the cache on a new collection
        found, missing = model.cache.get_many(movie_ids)
        self.metrics.cache_hits.inc(len(found))
        if missing:
            self.metrics.cache_misses.inc(len(missing))
            found.update(self._fetch(model, missing))
        return found

    def _fetch(self, model: ServedModel, movie_ids: list[str]) -> dict[str, NeighbourList]:
        """One batched neighbour query for these ids, stored in the model's cache."""
        fetched = model.vectors().neighbours(movie_ids, model.rank.neighbours_k)
        fresh = model.cache.put_many({m: [(n, s) for n, s in fetched.get(m, []) if n != m] for m in movie_ids})
        self._report_cache_bytes(model)
        return fresh

    def _report_cache_bytes(self, model: ServedModel) -> None:
        """Set the neighbour_cache_bytes gauge when the model in use's cache changed size (new lists, or
        the popular list's ids the ranking adds to its id table)."""
        if self.metrics.cache_bytes is not None and model is self.model:
            nbytes = model.cache.nbytes
            if nbytes != self._reported_bytes:
                self._reported_bytes = nbytes
                self.metrics.cache_bytes.set(nbytes)

    def warm(self, background: bool = True) -> threading.Thread | None:
        """At worker start: load the popular list and open the vector store now (a dependency that
        dies later leaves a list in memory), then fetch the neighbour lists of the most watched movies
        in a background thread (or here when `background` is False), so requests soon stop paying for
        cache misses. Returns the thread, if one was started."""
        self.popular()
        try:
            store = self.vectors()
            self.neighbour_cache.check_version(lambda: store.version)
        except Exception:  # requests fall back and retry; nothing to warm now
            return None
        if self.settings.warm_neighbours <= 0:
            return None
        if not background:
            self.warm_neighbours()
            return None
        thread = threading.Thread(target=self.warm_neighbours, name="neighbour-warm-up", daemon=True)
        thread.start()
        self.warm_thread = thread
        return thread

    def warm_neighbours(self) -> int:
        """Fetch the neighbour lists of the most watched movies not cached yet, in batches, within
        `warm_seconds`; returns how many lists were fetched. Failures end the warm-up quietly."""
        started = self._clock()
        fetched = 0
        count = min(self.settings.warm_neighbours, self.neighbour_cache.max_size)
        self.warming = True
        try:
            ids = [m for m, _ in self.history_source.popular(count)]
            fetched = self._fill(self.model, ids,
                                 stop=lambda: self._clock() - started > self.settings.warm_seconds)
            log.info("neighbour warm-up done",
                     extra={"fetched": fetched, "seconds": round(self._clock() - started, 3)})
        except Exception as exc:
            log.info("neighbour warm-up stopped", extra={"error": describe(exc), "fetched": fetched})
        finally:
            self.warming = False
            # The warmed cache is tens of thousands of long-lived objects: left in the collector's oldest
            # generation, every full collection walks them all (about 100-200 ms, a stall every request
            # in flight would wait for). Frozen, they are skipped; evicted lists are still freed by
            # reference counting.
            gc.freeze()
        return fetched

    # -- answers ------------------------------------------------------------------------------------
    def _history(self, user_id: int, model: ServedModel) -> tuple[list[tuple[str, float | None]], frozenset[str]]:
        """One round trip: the model's `history_size` most recent movies, which the ranking reads, and the ids
        of the whole history (at most `exclude_limit`), which the answer excludes."""
        return self.history_source.recent_and_seen(user_id, model.rank.history_size, self.settings.exclude_limit)

    def _popular_answer(self, model: ServedModel, popular: NormalizedPopularity,
                        history: list[tuple[str, float | None]], seen: frozenset[str], kind: str,
                        reason: str | None) -> Outcome:
        return Outcome(rank_popular(history, popular, model.rank, exclude=seen), kind, reason, model.name)

    def recommend(self, user_id: int, reasons: bool = True) -> Outcome:
        """Recommendations for one user; a failing dependency gives the popular list instead. In an
        experiment the user's arm chooses the model. `reasons=False` skips the "because" of each movie
        (None), for answers that do not show it."""
        experiment = self.experiment  # taken once, as the model: None outside an experiment
        if experiment is None:
            return self._recommend_with(self.model, user_id, reasons)
        arm, model = experiment.route(user_id, self.model)
        return dataclasses.replace(self._recommend_with(model, user_id, reasons), experiment=experiment.name,
                                   arm=arm)

    def _recommend_with(self, model: ServedModel, user_id: int, reasons: bool = True) -> Outcome:
        """One user's answer from `model` only."""
        popular = self.popular()
        try:
            history, seen = self._history(user_id, model)
            self._mark("sql", None)
        except Exception as exc:
            self._mark("sql", exc)
            return self._fallback(model, popular, [], frozenset(), classify(exc, "sql"))
        return self._rank_history(model, history, seen, popular, reasons)

    def recommend_many(self, user_ids: Sequence[int], reasons: bool = True) -> dict[int, Outcome]:
        """Recommendations for several users, with their missing neighbour lists fetched together (per
        arm in an experiment); `reasons` as in `recommend`."""
        experiment = self.experiment
        if experiment is None:
            return self._recommend_many_with(self.model, user_ids, reasons)
        control = self.model
        groups: dict[str, tuple[ServedModel, list[int]]] = {}
        for user_id in dict.fromkeys(user_ids):
            arm, model = experiment.route(user_id, control)
            groups.setdefault(arm, (model, []))[1].append(user_id)
        out: dict[int, Outcome] = {}
        for arm, (model, ids) in groups.items():
            for user_id, outcome in self._recommend_many_with(model, ids, reasons).items():
                out[user_id] = dataclasses.replace(outcome, experiment=experiment.name, arm=arm)
        return {user_id: out[user_id] for user_id in dict.fromkeys(user_ids)}

    def _recommend_many_with(self, model: ServedModel, user_ids: Sequence[int],
                             reasons: bool = True) -> dict[int, Outcome]:
        popular = self.popular()
        histories: dict[int, tuple[list[tuple[str, float | None]], frozenset[str]]] = {}
        out: dict[int, Outcome] = {}
        for user_id in dict.fromkeys(user_ids):
            try:
                histories[user_id] = self._history(user_id, model)
                self._mark("sql", None)
            except Exception as exc:
                self._mark("sql", exc)
                out[user_id] = self._fallback(model, popular, [], frozenset(), classify(exc, "sql"))
        if histories:
            # warm the cache with every user's movies in one batched query; on failure each user
            # below falls back on its own
            with contextlib.suppress(Exception):
                self.neighbours(list(dict.fromkeys(m for h, _ in histories.values() for m, _ in h)), model)
        for user_id, (history, seen) in histories.items():
            out[user_id] = self._rank_history(model, history, seen, popular, reasons)
        return out

    def _rank_history(self, model: ServedModel, history: list[tuple[str, float | None]], seen: frozenset[str],
                      popular: NormalizedPopularity, reasons: bool = True) -> Outcome:
        if not history:
            self.metrics.cold_start.inc()
            return self._popular_answer(model, popular, [], seen, "cold_start", None)
        try:
            neighbours = self.neighbours([m for m, _ in history], model)
            self._mark("vectors", None)
        except Exception as exc:
            self._mark("vectors", exc)
            return self._fallback(model, popular, history, seen, classify(exc, "vectors"))
        ranked = rank_arrays(history, neighbours, popular, model.rank, exclude=seen, reasons=reasons)
        self._report_cache_bytes(model)
        return Outcome(ranked, "personalized", None, model.name)

    def _fallback(self, model: ServedModel, popular: NormalizedPopularity, history: list[tuple[str, float | None]],
                  seen: frozenset[str], reason: str) -> Outcome:
        self.metrics.fallback.labels(reason=reason).inc()
        return self._popular_answer(model, popular, history, seen, "fallback", reason)

    def fallback_answer(self, reason: str = "error") -> Outcome:
        """The in-memory popular list, for a request that failed in an unexpected way."""
        return self._fallback(self.model, normalize_popularity(self.popular_cache.items), [], frozenset(), reason)

    def similar(self, movie_id: str, k: int) -> list[tuple[str, float]] | None:
        """Nearest movies of one movie (None when it has no vector); raises when the vectors fail."""
        store = self.vectors()
        lists = store.neighbours([movie_id], k + 1)
        if movie_id not in lists or not lists[movie_id]:
            return None
        return [(n, float(s)) for n, s in lists[movie_id] if n != movie_id][:k]

    # -- readiness ----------------------------------------------------------------------------------
    def probe(self) -> dict[str, Any]:
        """Check the store, the vectors and the caches now; returns the /ready document."""
        from inference.readiness import probe

        return probe(self)
