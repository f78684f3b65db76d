"""HTTP endpoints (one blueprint). Handlers translate HTTP to `Recommender` calls and back, nothing more."""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, request

from inference.openapi import spec
from inference.provenance import ProvenanceLog
from inference.service import Outcome, Recommender
from inference.validation import (
    InvalidInput,
    parse_format,
    parse_k,
    parse_movie_id,
    parse_user_id,
    parse_user_ids,
)

bp = Blueprint("recommend", __name__)
log = logging.getLogger("inference.service")


def recommender() -> Recommender:
    return current_app.extensions["recommender"]


def plain(text: str, status: int = 200) -> Response:
    """A text/plain answer."""
    return Response(text, status=status, mimetype="text/plain")


def invalid(exc: InvalidInput) -> Response:
    recommender().metrics.count_request("invalid")
    return plain(str(exc), 400)


def _answer(rec: Recommender, user_id: int, reasons: bool) -> Outcome:
    """The outcome for one user; an unexpected failure still answers with the popular list."""
    try:
        return rec.recommend(user_id, reasons)
    except Exception:  # the caller gets popular movies, the log gets the trace
        log.exception("recommendation failed", extra={"user_id": user_id, "request_id": g.get("request_id")})
        return rec.fallback_answer("error")


def _provenance(provenance: ProvenanceLog, user_id: int, outcome: Outcome, ids: list[str]) -> None:
    """The answer's provenance line (request id, user, version, ids; experiment and arm in one)."""
    provenance.write(g.get("request_id") or "", user_id, outcome.version, outcome.kind, ids, outcome.experiment,
                     outcome.arm)


def _observe(rec: Recommender, outcome: Outcome) -> None:
    rec.metrics.count_request(outcome.kind)
    rec.metrics.count_answer(outcome.arm, outcome.version)
    if outcome.kind == "fallback":
        g.fallback_reason = outcome.fallback_reason


@bp.get("/recommend/<user_id>")
def recommend(user_id: str) -> Response:
    """Up to 20 movie ids, best first, none watched: one comma-separated text line (or JSON)."""
    extensions = current_app.extensions  # one context lookup for both
    rec: Recommender = extensions["recommender"]
    started = time.perf_counter()
    req = request._get_current_object()  # type: ignore[attr-defined]
    try:
        uid = parse_user_id(user_id)
        # without a query string there is no format to read (request.args would parse an empty one)
        fmt = parse_format(req.args.get("format") if req.query_string else None)
    except InvalidInput as exc:
        return invalid(exc)
    outcome = _answer(rec, uid, reasons=fmt == "json")  # only the JSON answer shows "because"
    _observe(rec, outcome)
    ids = [s.movie_id for s in outcome.items]
    if fmt == "json":
        body = jsonify({
            "user_id": uid,
            "kind": outcome.kind,
            "model_version": outcome.version,
            "experiment": outcome.experiment,
            "arm": outcome.arm,
            "ids": ids,
            "items": [{"id": s.movie_id, "score": round(s.score, 6), "because": s.because}
                      for s in outcome.items],
        })
    else:
        body = plain(",".join(ids))
    body.headers["X-Model-Version"] = outcome.version
    _provenance(extensions["provenance"], uid, outcome, ids)
    rec.metrics.latency.observe(time.perf_counter() - started)
    return body


@bp.post("/recommend")
def recommend_many() -> Response:
    """Recommendations for up to 1,000 users at once: {"user_ids": [...]} -> {"<id>": [ids...]}."""
    rec = recommender()
    started = time.perf_counter()
    body = request.get_json(silent=True)
    try:
        user_ids = parse_user_ids(body, rec.settings.batch_max_users)
    except InvalidInput as exc:
        return invalid(exc)
    try:
        outcomes = rec.recommend_many(user_ids, reasons=False)  # the answer holds ids only
    except Exception:
        log.exception("batch recommendation failed", extra={"request_id": g.get("request_id")})
        fallback = rec.fallback_answer("error")
        outcomes = {uid: fallback for uid in user_ids}
    answers: dict[str, list[str]] = {}
    for uid, outcome in outcomes.items():
        _observe(rec, outcome)
        answers[str(uid)] = ids = [s.movie_id for s in outcome.items]
        _provenance(current_app.extensions["provenance"], uid, outcome, ids)
    rec.metrics.latency.observe(time.perf_counter() - started)
    response = jsonify(answers)
    versions = {outcome.version for outcome in outcomes.values()}
    response.headers["X-Model-Version"] = versions.pop() if len(versions) == 1 else rec.model.name
    return response


@bp.get("/similar/<movie_id>")
def similar(movie_id: str) -> Response:
    """The nearest movies of one movie by stored vectors."""
    rec = recommender()
    try:
        mid = parse_movie_id(movie_id)
        k = parse_k(request.args.get("k"), rec.settings.rank.n_results)
        fmt = parse_format(request.args.get("format"))
    except InvalidInput as exc:
        return plain(str(exc), 400)
    try:
        found = rec.similar(mid, k)
    except Exception as exc:
        log.warning("similar failed", extra={"movie_id": mid, "error": str(exc)[:300]})
        return plain("The vector store is unavailable right now; please retry.", 503)
    if found is None:
        return plain(f"Movie {mid} has no stored vector.", 404)
    if fmt == "json":
        # the score blends the collections' cosine similarities with the version's weights:
        # content_weight * sim_content + collab_weight * sim_collab, each sim in [-1, 1]
        return jsonify({"movie_id": mid, "model_version": rec.model.name, "ids": [n for n, _ in found],
                        "items": [{"id": n, "blended_similarity": round(s, 6)} for n, s in found]})
    return plain(",".join(n for n, _ in found))


@bp.get("/health")
def health() -> Response:
    """Liveness: the process answers."""
    return jsonify({"status": "ok"})


@bp.get("/ready")
def ready() -> Response:
    """Readiness: the store, the vectors and the caches are usable, else 503 with the reason."""
    doc = current_app.extensions["ready_probe"]()
    return _json(doc, 200 if doc["status"] == "ready" else 503)


@bp.get("/model/info")
def model_info() -> Response:
    """What is served: the model version and its ranking config, the encoder, the collections' versions,
    catalog size, service config, build revision."""
    rec = recommender()
    model = rec.model
    versions: dict[str, str] = {}
    size: int | None = None
    try:
        store = model.vectors()
        size = int(store.count())
        parts = getattr(store, "sources", None)
        if parts:
            names = [getattr(getattr(s, "settings", None), "collection", f"source{i}")
                     for i, (_, s) in enumerate(parts)]
            versions = {name: str(s.version) for name, (_, s) in zip(names, parts, strict=True)}
        else:
            versions = {getattr(getattr(store, "settings", None), "collection", "vectors"): str(store.version)}
    except Exception as exc:
        log.warning("model info without vectors", extra={"error": str(exc)[:300]})
    experiment = rec.experiment
    return jsonify({
        "model_version": model.name,
        "experiment": None if experiment is None else {
            "name": experiment.name,
            "arms": {"control": model.name, **{a: m.name for a, m in experiment.models.items()}}},
        "rank_config": dataclasses.asdict(model.rank),
        "encoder": rec.settings.encoder_name,
        "collection_versions": versions,
        "catalog_size": size,
        "config": rec.settings.as_dict(),
        "revision": current_app.config["REVISION"],
    })


@bp.get("/openapi.json")
def openapi() -> Response:
    """The OpenAPI 3 description of every endpoint."""
    return jsonify(spec())


def _json(doc: dict[str, Any], status: int) -> Response:
    response = jsonify(doc)
    response.status_code = status
    return response
