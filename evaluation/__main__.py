"""`python -m evaluation offline|online --out report.json`: measure the recommender.

offline: the active model version (or --version V) re-scored from the store on its gate's temporal
         holdout, which reproduces the figures its gate recorded, beside most popular and item-kNN
         (--protocol gate, the default); or leave-last-out on the MovieLens demo built from scratch
         through the real parser, jobs and ranking (--protocol leave-last-out); prints a Markdown table.
availability: per hour, the share of the stream's recommendation requests answered 200 within the
         simulator's limit (`evaluation.availability`; --serve-metrics PORT exports it).
online:  from the store, did users watch what they were served (conversion within a window, by day), or
         the two-snapshot comparison (--mode snapshots); --serve-metrics PORT exports the gauge.
experiment report [--name N] [--out F]: an experiment's arms compared from the store (JSON to F, the
         table on stdout); --serve-metrics PORT exports its gauges, refreshed periodically.
Exit 0 on success, 1 with a one-line reason otherwise.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import datetime


def _offline(args: argparse.Namespace) -> int:
    if args.protocol == "gate":
        return _offline_gate(args)
    from evaluation.offline import OfflineConfig, default_grid, markdown, run_offline, write_report

    config = OfflineConfig(seed=args.seed, users=args.users, cache_dir=args.cache_dir, workdir=args.workdir,
                           demo_users=args.demo_users, skip_last=1 if args.validation else 0)
    report = run_offline(config, grid=default_grid() if args.grid else ())
    write_report(report, args.out)
    print(markdown(report))
    if "grid" in report:
        from evaluation.metrics import markdown_table

        rows = {", ".join(f"{k}={v:g}" for k, v in g["config"].items()): g for g in report["grid"]}
        print()
        print(markdown_table(rows, columns=("hit_rate_at_20", "ndcg_at_20", "coverage_global")))
    print(f"\nwrote {args.out}: {report['users']} users, hit rate at 20 {100 * report['hit_rate_at_20']:.1f}%, "
          f"global coverage {100 * report['coverage_global']:.1f}% in {report['timings']['total_s']:.0f} s")
    return 0


def _offline_gate(args: argparse.Namespace) -> int:
    from db_utils.engine import get_engine
    from embeddings.config import EmbeddingSettings
    from evaluation.offline import write_report
    from evaluation.version_report import markdown, version_report
    from inference.config import ServiceSettings

    report = version_report(get_engine(args.database_url), EmbeddingSettings.from_env(), ServiceSettings.from_env(),
                            args.version)
    write_report(report, args.out)
    print(markdown(report))
    ours = report["service_ranking"]
    print(f"\nwrote {args.out}: {report['version']} on {ours['users']} users, hit rate at 20 "
          f"{100 * ours['hit_rate_at_20']:.1f}%, global coverage {100 * ours['coverage_global']:.1f}%; "
          f"{'the same figures as its gate' if report['matches_gate'] else 'DIFFERENT from its gate figures'}")
    return 0 if report["matches_gate"] else 1


def _when(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO time: {value!r}") from None


def _online(args: argparse.Namespace) -> int:
    from db_utils.engine import get_engine
    from evaluation import online

    engine = get_engine(args.database_url)
    if args.serve_metrics is not None:
        return online.serve_gauge(engine, args.serve_metrics, args.window_hours, args.refresh_seconds,
                                  args.max_seconds)
    if args.mode == "snapshots":
        if args.first is None or args.second is None:
            print("error: --mode snapshots needs --first and --second times", file=sys.stderr)
            return 1
        report = online.snapshots_report(engine, args.first, args.second)
    else:
        report = online.conversion_report(engine, args.window_hours, since=args.since, until=args.until)
    with open(args.out, "w", encoding="utf-8") as fh:
        json.dump(report, fh, indent=2, sort_keys=True, default=str)
        fh.write("\n")
    print(json.dumps({k: v for k, v in report.items() if not isinstance(v, dict | list)}, default=str))
    return 0


def _experiment(args: argparse.Namespace) -> int:
    from sqlalchemy import inspect

    from db_utils import experiments as ex
    from db_utils.engine import get_engine
    from evaluation import online
    from evaluation.experiments.exporter import update_gauges
    from evaluation.experiments.report import render_text
    from evaluation.experiments.store import report_of

    engine = get_engine(args.database_url)
    if not inspect(engine).has_table("experiments"):
        raise ValueError("the SQL store has no experiments table: run `python -m db_utils migrate` first.")

    def report() -> dict:
        with engine.connect() as conn:
            row = ex.by_name(conn, args.name) if args.name else ex.running(conn) or ex.latest(conn)
            if row is None:
                raise ValueError(f"there is no experiment named {args.name!r}." if args.name else
                                 "there is no experiment in the store.")
            return report_of(conn, row, window_hours=args.window_hours)

    if args.serve_metrics is not None:
        return online.serve_gauge(engine, args.serve_metrics, refresh_seconds=args.refresh_seconds,
                                  max_seconds=args.max_seconds, refresh=lambda: update_gauges(report()))
    doc = report()
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=2, sort_keys=True, default=str)
            fh.write("\n")
    print(render_text(doc))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["availability"]:  # its own parser: evaluation.availability
        from evaluation import availability

        return availability.main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m evaluation", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    off = sub.add_parser("offline", help="a model version's gate figures from the store, or leave-last-out")
    off.add_argument("--out", required=True, help="report.json path")
    off.add_argument("--protocol", choices=("gate", "leave-last-out"), default="gate",
                     help="gate: re-score a model version from the store (default); leave-last-out: the demo")
    off.add_argument("--version", default=None, help="gate protocol: the version (default: the active one)")
    off.add_argument("--database-url", default=None, help="gate protocol: SQLAlchemy URL (default: DATABASE_URL)")
    off.add_argument("--seed", type=int, default=0)
    off.add_argument("--users", type=int, default=None, help="score a seeded sample of N users (default: all)")
    off.add_argument("--cache-dir", default="data/eval_cache", help="MiniLM vector cache (default: %(default)s)")
    off.add_argument("--workdir", default=None, help="keep the built store and vectors here (default: temp)")
    off.add_argument("--grid", action="store_true", help="also score the tuning grid of ranking weights")
    off.add_argument("--validation", action="store_true",
                     help="score the second-to-last movie with the last one dropped (the split to tune on)")
    off.add_argument("--demo-users", type=int, default=None,
                     help="cut the demo to a seeded sample of N users first (a fast slice; default: whole demo)")
    on = sub.add_parser("online", help="conversion of served recommendations, from the store")
    on.add_argument("--out", default="online_report.json", help="report.json path (default: %(default)s)")
    on.add_argument("--database-url", default=None, help="SQLAlchemy URL (default: DATABASE_URL)")
    on.add_argument("--window-hours", type=float, default=24.0)
    on.add_argument("--mode", choices=("conversion", "snapshots"), default="conversion")
    on.add_argument("--since", type=_when, default=None, help="only lists served at or after this ISO time")
    on.add_argument("--until", type=_when, default=None, help="only lists served before this ISO time")
    on.add_argument("--first", type=_when, default=None, help="snapshots: the first time")
    on.add_argument("--second", type=_when, default=None, help="snapshots: the second time")
    on.add_argument("--serve-metrics", type=int, default=None, metavar="PORT",
                    help="export online_conversion_rate on PORT, refreshed periodically")
    on.add_argument("--refresh-seconds", type=float, default=60.0)
    on.add_argument("--max-seconds", type=float, default=None, help="stop serving after this long")
    exp = sub.add_parser("experiment", help="online experiments between model versions, from the store")
    exp_sub = exp.add_subparsers(dest="action", required=True)
    rep = exp_sub.add_parser("report", help="compare an experiment's arms (default: the running, else the latest)")
    rep.add_argument("--name", default=None, help="the experiment's name")
    rep.add_argument("--out", default=None, help="also write the JSON report here")
    rep.add_argument("--database-url", default=None, help="SQLAlchemy URL (default: DATABASE_URL)")
    rep.add_argument("--window-hours", type=float, default=24.0)
    rep.add_argument("--serve-metrics", type=int, default=None, metavar="PORT",
                     help="export the experiment's gauges on PORT, refreshed periodically")
    rep.add_argument("--refresh-seconds", type=float, default=60.0)
    rep.add_argument("--max-seconds", type=float, default=None, help="stop serving after this long")
    args = parser.parse_args(argv)
    from core.logs import setup

    setup(logging.WARNING)
    if args.command == "offline" and min(args.users or 1, args.demo_users or 1) < 1:
        parser.error("--users and --demo-users must be at least 1")
    try:
        return {"offline": _offline, "online": _online, "experiment": _experiment}[args.command](args)
    except (OSError, ValueError, RuntimeError) as exc:
        print(f"error: evaluation failed: {str(exc).strip().splitlines()[0]}", file=sys.stderr)
        return 1
    except Exception as exc:  # SQLAlchemy and ChromaDB errors: one line, not a traceback
        if type(exc).__module__.split(".")[0] in {"sqlalchemy", "chromadb"}:
            print(f"error: evaluation failed: {str(exc).strip().splitlines()[0]}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
