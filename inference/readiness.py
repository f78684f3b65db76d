"""/ready: check the SQL store, the served model's vectors and the caches now, and say why not ready.

One job: build the readiness document from the recommender's parts (it records what it sees in their
`Health`, so `recommender_ready` follows). `status` is `ready`, `degraded` (a popular list is held, so
every request is still answered) or `unavailable` (nothing to answer from)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from inference.health import describe

if TYPE_CHECKING:
    from inference.service import Recommender


def probe(rec: Recommender) -> dict[str, Any]:
    """The /ready document of `rec` (see the module docstring)."""
    checks: dict[str, dict[str, Any]] = {}
    try:
        items = rec.history_source.popular(rec.settings.popular_size)
        rec.popular_cache.get(lambda: items)
        rec.health.mark("sql", None)
        checks["sql"] = {"ok": True}
    except Exception as exc:
        rec.health.mark("sql", exc)
        checks["sql"] = {"ok": False, "error": describe(exc)}
    model = rec.model
    try:
        store = model.vectors()
        count = int(store.count())
        model.cache.check_version(lambda: store.version)
        rec.health.mark("vectors", None)
        checks["vectors"] = {"ok": count > 0, "count": count, "model_version": model.name}
        if count == 0:
            checks["vectors"]["error"] = "the vector collection is empty"
    except Exception as exc:
        rec.health.mark("vectors", exc)
        checks["vectors"] = {"ok": False, "error": describe(exc), "model_version": model.name}
    popular_size = len(rec.popular_cache.items)
    checks["caches"] = {"ok": popular_size > 0, "popular": popular_size,
                        "neighbour_lists": len(model.cache), "warming": rec.warming,
                        "neighbour_capacity": model.cache.max_size, "neighbour_bytes": model.cache.nbytes,
                        "neighbour_bytes_capacity": model.cache.max_bytes}
    if popular_size == 0:
        checks["caches"]["error"] = "no popular list is held in memory"
    failed = [name for name, check in checks.items() if not check["ok"]]
    if not failed:
        return {"status": "ready", "checks": checks}
    reason = "; ".join(f"{name}: {checks[name]['error']}" for name in failed)
    status = "degraded" if popular_size > 0 else "unavailable"
    return {"status": status, "reason": reason, "checks": checks}
