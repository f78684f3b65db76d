"""`python -m training run [--catalog SRC] [--every 6h] | status | promote V | rollback | provenance --user U
| experiment start --treatment V [--share S] [--name N] [--canary --min-users N --max-days D] | experiment stop
[--promote]`.

Each command prints one JSON line on stdout and exits 0, or prints one sentence on stderr and exits 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger("training")


def _setup_logging() -> None:
    from core.logs import setup

    setup(logging.WARNING)  # libraries: warnings and worse
    for name in ("training", "embeddings", "evaluation"):
        logging.getLogger(name).setLevel(logging.INFO)


def _engine(url: str | None) -> Any:
    from sqlalchemy import inspect

    from db_utils.engine import get_engine

    engine = get_engine(url)
    if not inspect(engine).has_table("model_versions"):
        raise ValueError("the SQL store has no model_versions table: run `python -m db_utils migrate` first.")
    return engine


def _print(doc: dict[str, Any]) -> None:
    print(json.dumps(doc, sort_keys=True, default=str), flush=True)


def cmd_run(args: argparse.Namespace) -> int:
    from training.config import parse_interval
    from training.cycle import Context, Stopped, run_cycle

    every = parse_interval(args.every) if args.every else None
    ctx = Context.from_env(_engine(args.database_url))
    if ctx.training.nice:
        os.nice(ctx.training.nice)  # yield the cores to the service that shares the host
    if every is None:
        _print(run_cycle(ctx, args.catalog))
        return 0
    from training.metrics import TrainerMetrics

    metrics = TrainerMetrics.start(ctx.training.metrics_port)
    signal.signal(signal.SIGTERM, lambda *_: ctx.stop.set())
    signal.signal(signal.SIGINT, lambda *_: ctx.stop.set())
    while not ctx.stop.is_set():
        started = time.time()
        _canary_tick(ctx.engine, metrics)
        try:
            doc = run_cycle(ctx, args.catalog)
            metrics.cycle(doc, time.time() - started)
            _print(doc)
        except Stopped:
            break
        except Exception as exc:  # a failed cycle is logged and retried at the next tick
            metrics.failed(time.time() - started)
            log.error("cycle failed", extra={"error": f"{type(exc).__name__}: {exc}"[:500]})
        ctx.stop.wait(max(0.0, every - (time.time() - started)))
    log.info("trainer stopped")
    return 0


def _canary_tick(engine: Any, metrics: Any) -> None:
    """The canary rule before a scheduled cycle; a failure is logged and the cycle still runs."""
    from training import experiments
    from training.cycle import now_utc

    try:
        doc = experiments.apply_canary(engine, now_utc(), metrics.registry)
        if doc is not None:
            _print({"canary": doc})
    except Exception as exc:
        log.error("canary check failed", extra={"error": f"{type(exc).__name__}: {exc}"[:500]})


def cmd_experiment_start(args: argparse.Namespace) -> int:
    from training import experiments
    from training.cycle import now_utc

    _print(experiments.start(_experiment_engine(args.database_url), args.treatment, args.share, now_utc(),
                             name=args.name, canary=args.canary, min_users=args.min_users, max_days=args.max_days))
    return 0


def cmd_experiment_stop(args: argparse.Namespace) -> int:
    from training import experiments
    from training.cycle import now_utc

    _print(experiments.stop(_experiment_engine(args.database_url), now_utc(), promote=args.promote))
    return 0


def _experiment_engine(url: str | None) -> Any:
    from sqlalchemy import inspect

    engine = _engine(url)
    if not inspect(engine).has_table("experiments"):
        raise ValueError("the SQL store has no experiments table: run `python -m db_utils migrate` first.")
    return engine


def cmd_status(args: argparse.Namespace) -> int:
    from sqlalchemy import inspect

    from db_utils import experiments as ex
    from db_utils import model_versions as mv

    with _engine(args.database_url).connect() as conn:
        versions = mv.list_versions(conn)
        history = mv.activations(conn)
        running = ex.running(conn) if inspect(conn).has_table("experiments") else None
    active = next((v.name for v in versions if v.status == "active"), None)
    experiment = None if running is None else running.as_dict()
    _print({"active": active, "experiment": experiment, "versions": [v.as_dict() for v in versions],
            "activations": [{**h, "version": mv.version_name(h["version_id"]), "at": h["at"].isoformat()}
                            for h in history]})
    return 0


def _activate(args: argparse.Namespace, version_id: int, event: str, reason: str) -> int:
    from db_utils import model_versions as mv
    from training.cycle import now_utc

    with _engine(args.database_url).begin() as conn:
        version = mv.get_version(conn, version_id)
        if version is None:
            raise ValueError(f"there is no model version {mv.version_name(version_id)}.")
        if version.collections_dropped or not version.collab_collection:
            raise ValueError(f"{version.name} has no vectors any more (pruned or never fitted); "
                             "it cannot be served.")
        previous = mv.activate(conn, version_id, event=event, reason=reason, now=now_utc())
    _print({"active": mv.version_name(version_id), "previous": None if previous is None else
            mv.version_name(previous), "event": event})
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    from db_utils import model_versions as mv

    return _activate(args, mv.parse_version_name(args.version), "promote", "promoted by hand")


def cmd_rollback(args: argparse.Namespace) -> int:
    from db_utils import model_versions as mv

    with _engine(args.database_url).connect() as conn:
        active = mv.active_version(conn)
        history = mv.activations(conn)
        usable = {v.id for v in mv.list_versions(conn) if not v.collections_dropped and v.collab_collection}
    if active is None:
        raise ValueError("no version is active, so there is nothing to roll back.")
    # the newest activation before the current one's of another version that still has its vectors
    earlier = [h["version_id"] for h in history if h["version_id"] != active.id and h["version_id"] in usable]
    if not earlier:
        raise ValueError(f"{active.name} is the only version that can be served; there is nothing to roll back to.")
    return _activate(args, earlier[-1], "rollback", f"rolled back from {active.name}")


def _parse_time(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO time such as 2026-12-03T10:00:00Z.") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def cmd_provenance(args: argparse.Namespace) -> int:
    from db_utils import model_versions as mv
    from inference.config import ServiceSettings
    from inference.provenance import find_answer, read_lines

    path = args.log or ServiceSettings.from_env().provenance_log
    at = _parse_time(args.at) if args.at else None
    try:
        answer = find_answer(read_lines(path), args.user, at)
    except FileNotFoundError:
        raise ValueError(f"the provenance log {path} does not exist (PROVENANCE_LOG).") from None
    if answer is None:
        raise ValueError(f"no answer to user {args.user} is in {path}" + (f" at or before {args.at}." if at else "."))
    version_doc: dict[str, Any] | None = None
    name = str(answer.get("version"))
    if name.startswith("v"):
        with _engine(args.database_url).connect() as conn:
            row = mv.get_version(conn, mv.parse_version_name(name))
        if row is not None:
            version_doc = {"version": row.name, "status": row.status, "watermark": row.watermark,
                           "code_revision": row.code_revision, "model_fingerprint": row.model_fingerprint,
                           "trained_at": row.created_at.isoformat(), "rank_config": row.rank_config,
                           "collab_config": row.collab_config,
                           "gate": {k: row.metrics.get(k) for k in ("candidate", "most_popular", "active")}}
    _print({"answer": answer, "version": version_doc if version_doc else {"version": name,
            "note": "content vectors before any promoted version" if name == "content" else "unknown version"}})
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m training", description=__doc__.splitlines()[0])
    top.add_argument("--database-url", help="SQLAlchemy URL (default: DATABASE_URL or sqlite:///data/recsys.db)")
    sub = top.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="one training cycle, or one every --every")
    run.add_argument("--catalog", help="catalog source for the embedding step: PATH.csv, kaggle:PATH, movielens, api")
    run.add_argument("--every", help="run on a schedule, e.g. 6h (SIGTERM stops between steps)")
    run.set_defaults(func=cmd_run)
    sub.add_parser("status", help="the versions and the active one").set_defaults(func=cmd_status)
    promote = sub.add_parser("promote", help="make a version active")
    promote.add_argument("version")
    promote.set_defaults(func=cmd_promote)
    sub.add_parser("rollback", help="back to the previously active version").set_defaults(func=cmd_rollback)
    prov = sub.add_parser("provenance", help="which version answered a user, and what built it")
    prov.add_argument("--user", type=int, required=True)
    prov.add_argument("--at", help="ISO time: the last answer at or before it (default: the last answer)")
    prov.add_argument("--log", help="provenance log (default: PROVENANCE_LOG or data/provenance.log)")
    prov.set_defaults(func=cmd_provenance)
    experiment = sub.add_parser("experiment", help="an A/B test or canary between the active version and another")
    actions = experiment.add_subparsers(dest="action", required=True)
    begin = actions.add_parser("start", help="start one (control: the active version)")
    begin.add_argument("--treatment", required=True, help="the version to try, e.g. v4")
    begin.add_argument("--share", type=float, default=0.5, help="the treatment's share of users (default: %(default)s)")
    begin.add_argument("--name", help="the experiment's name (default: v<control>-vs-v<treatment>-<time>)")
    begin.add_argument("--canary", action="store_true", help="let the trainer promote or abort it by the rule")
    begin.add_argument("--min-users", type=int, help="canary: judged users per arm before a promotion")
    begin.add_argument("--max-days", type=float, help="canary: abort after this many days without a promotion")
    begin.set_defaults(func=cmd_experiment_start)
    end = actions.add_parser("stop", help="stop the running experiment")
    end.add_argument("--promote", action="store_true", help="and make its treatment the active version")
    end.set_defaults(func=cmd_experiment_stop)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    _setup_logging()
    from sqlalchemy.exc import SQLAlchemyError

    try:
        return int(args.func(args))
    except (ValueError, OSError, SQLAlchemyError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        print(f"error: {reason}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    threading.current_thread().name = "trainer"
    sys.exit(main())
