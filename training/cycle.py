"""One training cycle: embed what is new, fit, gate, promote or reject, prune. Safe beside the service and
the parser, and after a kill -9 at any point.

Steps (each logged with its time; SIGTERM ends the cycle between two of them):
1. recover: a `candidate` left by a trainer that died is marked `failed` and its collections dropped;
2. embed: the embedding job on the catalog source (`--catalog`, else the movie API when MOVIE_API_URL is
   set, else the movies already in the store, stream-registered ones described by their slug);
3. snapshot: every (user, movie) interaction with its times and rating, and the store's watermark; when
   the active version was trained on the same watermark with the same recipe and code, nothing is done;
4. gate: the candidate's recipe fitted on the temporal holdout's held-in part and scored
   (`evaluation.gate`), beside most popular and the active version's recipe on the same split;
5. fit: the recipe on the whole snapshot into the version's own collection `<prefix>_v<N>`;
6. decide: promote (one transaction: the old active version is retired) or reject, with the figures;
7. prune: collections of all but the newest `keep_versions` versions (and never the active one) deleted.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine

from core.revision import code_revision
from db_utils import model_versions as mv
from embeddings.collab_job import collab_config_from_env, drop_collection, fit_pairs, replace_vectors
from embeddings.collaborative import CollabConfig
from embeddings.config import EmbeddingSettings
from embeddings.store import VectorStore
from evaluation import gate
from inference.config import ServiceSettings
from training.config import TrainingSettings

log = logging.getLogger("training.cycle")
Fit = Callable[[list[tuple[int, str]], Any], Any]


class Stopped(Exception):
    """The cycle was asked to stop (SIGTERM) between two steps."""


def now_utc() -> datetime:
    """Naive UTC, as the store keeps times."""
    return datetime.now(UTC).replace(tzinfo=None)


@dataclasses.dataclass
class Context:
    """What a cycle works with (built from the environment by `from_env`; tests pass their own)."""

    engine: Engine
    embedding: EmbeddingSettings
    training: TrainingSettings
    service: ServiceSettings
    collab: CollabConfig
    encoder: Any = None
    fit: Fit = fit_pairs
    stop: threading.Event = dataclasses.field(default_factory=threading.Event)

    @classmethod
    def from_env(cls, engine: Engine) -> Context:
        return cls(engine, EmbeddingSettings.from_env(), TrainingSettings.from_env(), ServiceSettings.from_env(),
                   collab_config_from_env())

    def store(self, collection: str) -> VectorStore:
        return VectorStore(dataclasses.replace(self.embedding, collection=collection))

    def collab_name(self, version_id: int, suffix: str = "") -> str:
        return f"{self.embedding.collab_collection}_v{version_id}{suffix}"


class Steps:
    """Times each step and checks the stop flag between steps."""

    def __init__(self, stop: threading.Event):
        self.stop = stop
        self.timings: dict[str, float] = {}

    def run(self, name: str, action: Callable[[], Any]) -> Any:
        if self.stop.is_set():
            raise Stopped(f"stopped before {name}")
        started = time.perf_counter()
        log.info("step started", extra={"step": name})
        result = action()
        self.timings[name] = round(time.perf_counter() - started, 3)
        log.info("step done", extra={"step": name, "seconds": self.timings[name]})
        return result


def recover(ctx: Context) -> list[str]:
    """Mark candidates left by a dead trainer `failed` and drop their collections."""
    with ctx.engine.begin() as conn:
        stale = [v for v in mv.list_versions(conn) if v.status == "candidate"]
        for version in stale:
            mv.update_version(conn, version.id, status="failed",
                              reason="the trainer stopped before this version was decided")
    for version in stale:
        _drop_version_collections(ctx, version.id)
    return [v.name for v in stale]


def _drop_version_collections(ctx: Context, version_id: int) -> None:
    for name in (ctx.collab_name(version_id), ctx.collab_name(version_id, "_gate"),
                 ctx.collab_name(version_id, "_gate_active")):
        drop_collection(ctx.embedding, name)
    with ctx.engine.begin() as conn:
        mv.update_version(conn, version_id, collections_dropped=True)


def embed(ctx: Context, catalog: str | None) -> dict[str, Any]:
    """The embedding job: new and changed movies get content vectors (stream-registered ones included)."""
    from embeddings.job import build

    source = catalog or ("api" if ctx.embedding.movie_api_url else None)
    report = build(source, settings=ctx.embedding, engine=ctx.engine, encoder=ctx.encoder, progress=False)
    # the fingerprint the content collection records is the one of the model whose vectors it holds
    return {"source": source or "store", "encoded": report.encoded, "vectors": report.vectors,
            "fingerprint": ctx.store(ctx.embedding.collection).model}


def prune(ctx: Context) -> list[str]:
    """Drop the collections of all but the newest `keep_versions` versions (never the active one nor a
    running experiment's)."""
    from sqlalchemy import inspect

    from db_utils import experiments as ex

    with ctx.engine.connect() as conn:
        versions = mv.list_versions(conn)
        running = ex.running(conn) if inspect(conn).has_table("experiments") else None
    keep = {v.id for v in versions[:ctx.training.keep_versions]} | {v.id for v in versions if v.status == "active"}
    if running is not None:  # a running experiment's arms keep their vectors however old
        keep |= {int(arm["version_id"]) for arm in running.arms}
    dropped = []
    for version in versions:
        if version.id not in keep and not version.collections_dropped:
            _drop_version_collections(ctx, version.id)
            dropped.append(version.name)
    return dropped


def _same_recipe(a: gate.Recipe, b: gate.Recipe) -> bool:
    return a.as_dict() == b.as_dict()


def run_cycle(ctx: Context, catalog: str | None = None) -> dict[str, Any]:
    """One cycle (module docstring); returns the `training run` document."""
    started = time.perf_counter()
    steps = Steps(ctx.stop)
    recovered = steps.run("recover", lambda: recover(ctx))
    embedded = steps.run("embed", lambda: embed(ctx, catalog))

    def snapshot() -> tuple[list[gate.Event], dict[str, Any], mv.VersionRow | None]:
        with ctx.engine.connect() as conn:
            watermark = mv.store_watermark(conn)
            events = mv.interaction_events(conn)
            active = mv.active_version(conn)
        return events, watermark, active

    events, watermark, active = steps.run("snapshot", snapshot)
    recipe = gate.Recipe(ctx.collab, ctx.service.rank)
    revision = code_revision()
    fingerprint = embedded["fingerprint"] or ""
    if (active is not None and active.watermark == watermark and _same_recipe(gate.Recipe.from_version(active), recipe)
            and active.code_revision == revision and active.model_fingerprint == fingerprint
            and ctx.fit is fit_pairs):
        return {"version": active.name, "status": "active", "unchanged": True, "metrics": active.metrics.get(
            "candidate", {}), "reason": "the store, the recipe and the code are those of the active version",
                "recovered": recovered, "timings": steps.timings}
    if not events:
        raise ValueError("the store holds no watch or rating yet: ingest the stream first.")

    with ctx.engine.begin() as conn:
        version_id = mv.create_version(conn, content_collection=ctx.embedding.collection,
                                       rank_config=dataclasses.asdict(recipe.rank),
                                       collab_config=dataclasses.asdict(recipe.collab), code_revision=revision,
                                       model_fingerprint=fingerprint, now=now_utc())
        mv.update_version(conn, version_id, watermark=watermark)
    name = mv.version_name(version_id)
    log.info("candidate created", extra={"version": name})
    try:
        outcome = _gate_fit_decide(ctx, steps, version_id, events, watermark, active, recipe)
    except BaseException as exc:
        with ctx.engine.begin() as conn:
            mv.update_version(conn, version_id, status="failed", reason=f"{type(exc).__name__}: {exc}"[:500])
        _drop_version_collections(ctx, version_id)
        raise
    pruned = steps.run("prune", lambda: prune(ctx))
    outcome.update({"version": name, "recovered": recovered, "pruned": pruned, "embedded": embedded,
                    "timings": {**steps.timings, "total": round(time.perf_counter() - started, 3)}})
    return outcome


def _gate_fit_decide(ctx: Context, steps: Steps, version_id: int, events: list[gate.Event],
                     watermark: dict[str, Any], active: mv.VersionRow | None, recipe: gate.Recipe) -> dict[str, Any]:
    config = gate.GateConfig(ctx.training.holdout_fraction, ctx.training.min_movies, ctx.training.eval_users,
                             ctx.training.tolerance, ctx.training.seed)
    until = datetime.fromisoformat(watermark["latest_event"]) if watermark.get("latest_event") else None
    content = ctx.store(ctx.embedding.collection)

    def score() -> dict[str, Any]:
        suffixes = {"candidate": "_gate", "active": "_gate_active"}
        try:
            report = gate.gate_report(
                events, config, until, recipe, None if active is None else gate.Recipe.from_version(active),
                content=content,
                make_collab=lambda role: ctx.store(ctx.collab_name(version_id, suffixes[role])), fit=ctx.fit,
                active_fit=fit_pairs, service=ctx.service)
        finally:
            for suffix in suffixes.values():
                drop_collection(ctx.embedding, ctx.collab_name(version_id, suffix))
        report["active_version"] = None if active is None else active.name
        return report

    report = steps.run("gate", score)

    def fit_all() -> dict[str, Any]:
        pairs = sorted({(e[0], e[1]) for e in events})
        ids, vectors = ctx.fit(pairs, recipe.collab)
        store = ctx.store(ctx.collab_name(version_id))
        collection_version, _ = replace_vectors(store, ids, vectors)
        with ctx.engine.begin() as conn:
            mv.update_version(conn, version_id, collab_collection=ctx.collab_name(version_id))
        return {"movies": len(ids), "pairs": len(pairs), "collection_version": collection_version}

    fitted = steps.run("fit", fit_all)
    promote, reason = gate.decide(report["candidate"], report["most_popular"], report["active"],
                                  ctx.training.tolerance)

    def record() -> str:
        with ctx.engine.begin() as conn:
            mv.update_version(conn, version_id, metrics=report)
            if promote:
                mv.activate(conn, version_id, event="promote", reason=reason, now=now_utc())
                return "active"
            mv.update_version(conn, version_id, status="rejected", reason=reason)
            return "rejected"

    status = steps.run("decide", record)
    log.info("version decided", extra={"version": mv.version_name(version_id), "status": status, "reason": reason})
    return {"status": status, "reason": reason, "metrics": report["candidate"], "gate": report, "fitted": fitted}
