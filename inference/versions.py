"""Which model the service answers with, and switching to a newly promoted one without a mixed answer.

A `ServedModel` is everything one version answers with: its name (`X-Model-Version`), its `RankConfig`,
its vector source (opened lazily, with a short backoff after a failure) and its own neighbour cache. The
`Recommender` holds exactly one; a request takes it once and uses nothing else, so an answer is never a
mix of two versions. `ModelWatcher` polls the store's active version (one indexed row, every
`MODEL_POLL_SECONDS`) in a background thread; on a change it builds the new model, warms its neighbour
cache for the most watched movies, and only then swaps the reference (an atomic assignment).

Before the training role has promoted anything, the model is `content`: the embedding job's MiniLM
collection with the service's own `RankConfig` (RANK_* settings).

The same poll reads the running experiment (one more indexed row, `db_utils.experiments.running`). A
`ServedExperiment` holds its name, its assignment (`core.assignment`, cut points computed once) and a
`ServedModel` per treatment arm, built and warmed before it is installed; the control arm is whatever
the recommender serves (the active version's model). A started or stopped experiment is picked up at
the next poll, without a restart.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from core.assignment import assigner
from inference.cache import NeighbourCache
from inference.config import RankConfig, ServiceSettings
from inference.sources import VectorSource

log = logging.getLogger("inference.versions")
UNVERSIONED = "content"
CONTROL = "control"


class VersionSource(Protocol):
    """Where the active version is read from (`db_utils.model_versions.active_version`)."""

    def active(self) -> Any:
        """The active `VersionRow`, or None when no version was ever promoted."""
        ...


class NoVersions:
    """A `VersionSource` with no versions (tests that pass their own history and vector sources)."""

    def active(self) -> Any:
        return None

    def experiment(self) -> Any:
        return None


class SqlVersionSource:
    """The active version from the SQL store; a store without the versions table has no version."""

    def __init__(self, url: str | None = None):
        self.url = url

    def active(self) -> Any:
        from sqlalchemy import inspect

        from db_utils import model_versions
        from db_utils.engine import get_engine

        engine = get_engine(self.url)
        with engine.connect() as conn:
            try:
                return model_versions.active_version(conn)
            except Exception:
                if not inspect(conn).has_table("model_versions"):
                    return None  # a store from before migration 0003: serve the content vectors
                raise

    def experiment(self) -> Any:
        """(the running `ExperimentRow`, {version id: `VersionRow`} of its treatment arms), or None."""
        from sqlalchemy import inspect

        from db_utils import experiments, model_versions
        from db_utils.engine import get_engine

        with get_engine(self.url).connect() as conn:
            try:
                row = experiments.running(conn)
            except Exception:
                if not inspect(conn).has_table("experiments"):
                    return None  # a store from before migration 0005: no experiments
                raise
            if row is None:
                return None
            ids = {int(a["version_id"]) for a in row.arms if a["arm"] != CONTROL}
            return row, {i: model_versions.get_version(conn, i) for i in ids}


def rank_config_of(version: Any, fallback: RankConfig) -> RankConfig:
    """The version's recorded `RankConfig` (fields it does not record keep the service's values)."""
    return fallback if version is None else RankConfig.from_record(version.rank_config, fallback)


class ServedModel:
    """One version's answering parts: name, ranking config, vectors (lazy, with backoff) and cache."""

    def __init__(self, name: str, rank: RankConfig, factory: Callable[[], VectorSource],
                 settings: ServiceSettings, clock: Callable[[], float] = time.monotonic, version_id: int | None = None):
        self.name = name
        self.rank = rank
        self.version_id = version_id
        self._factory = factory
        self._clock = clock
        self._vectors: VectorSource | None = None
        self._failed_at: float | None = None
        self._lock = threading.Lock()
        self.cache = NeighbourCache(settings.neighbour_cache_size, settings.version_check_seconds, clock=clock,
                                    max_bytes=settings.neighbour_cache_bytes)

    def vectors(self) -> VectorSource:
        """The vector source, opened on first use in this process; retried at most every 2 s."""
        if self._vectors is not None:
            return self._vectors
        with self._lock:
            if self._vectors is None:
                now = self._clock()
                if self._failed_at is not None and now - self._failed_at < 2.0:
                    raise ConnectionError("the vector store could not be opened a moment ago")
                try:
                    self._vectors = self._factory()
                except Exception:
                    self._failed_at = now
                    raise
        return self._vectors


class ServedExperiment:
    """A running experiment as the service answers it: which arm a user gets, and each treatment arm's
    model (the control arm is the recommender's model in use)."""

    def __init__(self, experiment_id: int, name: str, key: str, arms: list[tuple[str, float]],
                 models: dict[str, ServedModel]):
        self.id = experiment_id
        self.name = name
        self.arm_of = assigner(key, arms)
        self.models = models
        self.signature = (experiment_id, tuple((a, m.name) for a, m in sorted(models.items())))

    def route(self, user_id: int, control: ServedModel) -> tuple[str, ServedModel]:
        """The user's arm and the model that answers it."""
        arm = self.arm_of(user_id)
        return arm, self.models.get(arm, control)


def experiment_signature(running: Any) -> tuple[Any, ...] | None:
    """What identifies a polled experiment for the watcher: its id and each treatment arm's version."""
    if running is None:
        return None
    row, versions = running
    return (row.id, tuple(sorted((a["arm"], versions[int(a["version_id"])].name) for a in row.arms
                                 if a["arm"] != CONTROL)))


class ModelWatcher:
    """Polls the active version and swaps the recommender's model when it changes (module docstring)."""

    def __init__(self, source: VersionSource, build: Callable[[Any], ServedModel],
                 install: Callable[[ServedModel], None], current: Callable[[], ServedModel],
                 warm: Callable[[ServedModel], int], poll_seconds: float,
                 install_experiment: Callable[[ServedExperiment | None], None] | None = None,
                 current_experiment: Callable[[], ServedExperiment | None] | None = None):
        self.source = source
        self._install_experiment = install_experiment
        self._current_experiment = current_experiment
        self._build = build
        self._install = install
        self._current = current
        self._warm = warm
        self.poll_seconds = poll_seconds
        self._stop = threading.Event()
        self.thread: threading.Thread | None = None
        self.last_error: str | None = None
        self.switches = 0

    def check(self, warm: bool = True) -> bool:
        """Look at the active version once; switch when it changed (after warming the new model's cache
        unless `warm` is False, as at worker start, where the regular warm-up follows). True when a switch
        happened. A failed look keeps the model in use (the next poll looks again)."""
        poll_experiment = getattr(self.source, "experiment", None) if self._install_experiment else None
        try:
            version = self.source.active()
            running = poll_experiment() if poll_experiment is not None else None
        except Exception as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"[:300]
            return False
        self.last_error = None
        switched = self._switch_model(version, warm)
        if poll_experiment is not None:
            self._switch_experiment(running, warm)
        return switched

    def _switch_model(self, version: Any, warm: bool) -> bool:
        current = self._current()
        wanted = UNVERSIONED if version is None else version.name
        if wanted == current.name:
            return False
        model = self._build(version)
        warmed = self._warm(model) if warm else 0
        self._install(model)
        self.switches += 1
        log.info("model switched", extra={"from_version": current.name, "to_version": model.name,
                                          "warmed_lists": warmed})
        return True

    def _switch_experiment(self, running: Any, warm: bool) -> None:
        """Install the polled experiment (its treatment models built and warmed first), or remove a
        stopped one; nothing when it is the one in use."""
        assert self._install_experiment is not None and self._current_experiment is not None
        current = self._current_experiment()
        wanted = experiment_signature(running)
        if wanted == (None if current is None else current.signature):
            return
        if running is None:
            self._install_experiment(None)
            log.info("experiment ended", extra={"experiment": current.name if current else None})
            return
        row, versions = running
        models: dict[str, ServedModel] = {}
        warmed = 0
        for arm in row.arms:
            if arm["arm"] == CONTROL:
                continue
            version = versions[int(arm["version_id"])]
            if version is None:
                raise LookupError(f"experiment {row.name} names v{arm['version_id']}, which does not exist")
            models[arm["arm"]] = model = self._build(version)
            warmed += self._warm(model) if warm else 0
        experiment = ServedExperiment(row.id, row.name, row.assignment_key, row.shares, models)
        self._install_experiment(experiment)
        log.info("experiment started", extra={"experiment": row.name, "warmed_lists": warmed,
                                              "arms": {a: m.name for a, m in models.items()}})

    def start(self) -> threading.Thread:
        """Run `check` every `poll_seconds` in a daemon thread (one per serving process)."""
        def loop() -> None:
            while not self._stop.wait(self.poll_seconds):
                try:
                    self.check()
                except Exception as exc:  # a broken build keeps the old model; logged, retried next poll
                    self.last_error = f"{type(exc).__name__}: {exc}"[:300]
                    log.warning("model switch failed", extra={"error": self.last_error})

        self.thread = threading.Thread(target=loop, name="model-watch", daemon=True)
        self.thread.start()
        return self.thread

    def stop(self) -> None:
        self._stop.set()
