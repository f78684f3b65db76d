"""Quality study of issue 19: EASE and ALS beside the service, collaborative methods, ranking and MMR weights.

Every figure is measured through the offline harness (`evaluation.offline`): `run_offline` builds the
store, the MiniLM collection and the collaborative collection of a split in a kept work directory and
scores the service's defaults; the study then rebuilds the collaborative collection with each
`CollabConfig` variant by the real job (`embeddings.collab_job.build_collab`), reads the inputs as the
service does (`read_inputs`), ranks with `inference.ranking.rank` and scores with the harness's `score`.

Protocol (tuned on validation only):
1. validation (leave-last-out with each user's last movie dropped, `OfflineConfig(skip_last=1)`): EASE's
   lambda and ALS's regularisation grids, then every (collaborative method, content weight, popularity
   damping, MMR weight) of the grid; the pick is the best hit rate at 20 with global coverage >= 30%;
2. test (leave-last-out, `skip_last=0`): the defaults, the pick and the tuned baselines;
3. last-20%-out (`metrics.last_fraction_out`, each user's last 20% of distinct movies held out): the
   same, built by the harness's `build_pipeline` from this split's held-in log.
Every table prints each recommender beside the baselines of the same run, with standard errors, the
cold-start buckets and a paired test (McNemar exact) of the service against the best baseline.

    python benchmarks/quality_study.py --out data/quality_study.json
    python benchmarks/quality_study.py --splits test fraction --choice pick.json --drop-watched
    python benchmarks/quality_study.py --demo-users 150 --splits val test     # a small, fast slice

``--drop-watched`` adds, for each service row, the same lists with every held-in movie of the user
dropped from rank's 50 candidates (the service itself skips only the 50 history movies it reads).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

import numpy as np

from embeddings.collaborative import CollabConfig, Interactions, interaction_matrix, item_vectors
from evaluation import baselines, metrics, offline
from inference.config import RankConfig, ServiceSettings
from inference.diversity import mmr

COVERAGE_TARGET = 0.30
POOL = 50  # candidates `rank` returns for the MMR re-rank (its first 20 are exactly rank's 20)

COLLAB_VARIANTS: dict[str, CollabConfig] = {  # the job builds CollabConfig() today: ALS, idf, alpha 2
    "svd64": CollabConfig(method="svd"),
    "als64": CollabConfig(method="als", dim=64),
    "als128": CollabConfig(method="als", dim=128),
    "ease64": CollabConfig(method="ease", dim=64),
}
CONTENT_WEIGHTS = (0.25, 0.5, 1.0)
DAMPINGS = (0.0, 0.1, 0.2, 0.3)
MMR_WEIGHTS = (0.0, 0.1, 0.2, 0.3)
ALS_REGULARIZATIONS = (0.01, 0.05, 0.2)


@dataclass
class Stage:
    """One split built by the harness: its store and collections, users, targets and the held-in matrix."""

    name: str
    built: offline.Built
    users: list[int]
    held_out: dict[int, Any]  # movie id (leave-last-out) or tuple of ids (last-20%-out)
    history_lengths: dict[int, int]
    data: Interactions
    catalog: list[str]
    viewers: dict[str, int]
    held: offline.HeldIn | None = None
    harness: dict[str, Any] = field(default_factory=dict)

    @property
    def fraction(self) -> bool:
        return self.held is None


def _demo(cache_dir: str) -> tuple[str, str]:
    """The harness's cached demo (catalog, events), generated as `run_offline` does when missing."""
    from evaluation.simulator.movielens import write_movielens

    demo = os.path.join(cache_dir, "movielens-demo")
    if not os.path.isdir(demo):
        os.makedirs(cache_dir, exist_ok=True)
        partial = tempfile.mkdtemp(prefix="movielens-demo-", dir=cache_dir)
        write_movielens(partial)
        os.replace(partial, demo)
    return os.path.join(demo, "catalog.csv"), os.path.join(demo, "events.log")


def _matrix(built: offline.Built) -> Interactions:
    from db_utils import queries
    from db_utils.engine import create

    engine = create(built.db_url)
    with engine.connect() as conn:
        data = interaction_matrix(queries.interaction_pairs(conn))
    engine.dispose()
    return data


def _open_built(workdir: str) -> offline.Built:
    """The store and both collections `run_offline` left in ``workdir``."""
    from embeddings.collab_job import collab_settings
    from embeddings.config import EmbeddingSettings
    from embeddings.store import VectorStore

    settings = dataclasses.replace(EmbeddingSettings.from_env(), chroma_path=os.path.join(workdir, "chroma"),
                                   chroma_host=None, collection="movies")
    return offline.Built(f"sqlite:///{os.path.join(workdir, 'recsys.db')}", VectorStore(settings),
                         VectorStore(collab_settings(settings, env={})))


def leave_last_out_stage(name: str, skip_last: int, workdir: str, args: argparse.Namespace) -> Stage:
    """`run_offline` on a kept work directory (the harness's own figure), then the same split reopened."""
    cfg = offline.OfflineConfig(seed=args.seed, cache_dir=args.cache_dir, workdir=workdir, skip_last=skip_last,
                                demo_users=args.demo_users)
    harness = offline.run_offline(cfg)
    catalog_path, events_path = _demo(args.cache_dir)
    if args.demo_users is not None:
        catalog_path, events_path = os.path.join(workdir, "slice", "catalog.csv"), os.path.join(workdir, "slice",
                                                                                                  "events.log")
    held = offline.split_log(events_path, os.path.join(workdir, "held_in.log"), skip_last)
    built = _open_built(workdir)
    data = _matrix(built)
    users = offline.sample_users(held.split.held_out, None, args.seed)
    viewers = dict(zip(data.movies, np.asarray(data.matrix.sum(axis=0)).ravel().astype(int).tolist(), strict=True))
    return Stage(name, built, users, {u: held.split.held_out[u] for u in users}, held.history_lengths, data,
                 offline.read_catalog_ids(catalog_path), viewers, held, harness)


def fraction_stage(workdir: str, args: argparse.Namespace, fraction: float = 0.2) -> Stage:
    """Last-20%-out: the parser's events split by `metrics.last_fraction_out`, the held-in lines built by
    the harness's `build_pipeline` (store, MiniLM and collaborative vectors)."""
    from data_parsing.parser import RateEvent, WatchEvent, parse

    os.makedirs(workdir, exist_ok=True)
    catalog_path, events_path = _demo(args.cache_dir)
    if args.demo_users is not None:
        catalog_path, events_path = offline.slice_demo(catalog_path, events_path, os.path.join(workdir, "slice"),
                                                       args.demo_users, args.seed)
    with open(events_path, encoding="utf-8") as fh:
        lines = fh.readlines()
    parsed = [parse(line) for line in lines]
    split = metrics.last_fraction_out([metrics.Interaction(e.user_id, e.movie_id, e.ts) for e in parsed
                                       if isinstance(e, WatchEvent | RateEvent)], fraction)
    out = {(u, m) for u, ms in split.held_out.items() for m in ms}
    held_in_path = os.path.join(workdir, "held_in.log")
    with open(held_in_path, "w", encoding="utf-8") as fh:
        fh.writelines(line for line, e in zip(lines, parsed, strict=True)
                      if (getattr(e, "user_id", None), getattr(e, "movie_id", None)) not in out)
    built = offline.build_pipeline(workdir, catalog_path, held_in_path, args.cache_dir, args.seed)
    data = _matrix(built)
    lengths: dict[int, set[str]] = {}
    for row in split.held_in:
        lengths.setdefault(row.user_id, set()).add(row.movie_id)
    users = sorted(split.held_out)
    viewers = dict(zip(data.movies, np.asarray(data.matrix.sum(axis=0)).ravel().astype(int).tolist(), strict=True))
    return Stage("last-20%-out", built, users, dict(split.held_out), {u: len(m) for u, m in lengths.items()}, data,
                 offline.read_catalog_ids(catalog_path), viewers)


# ------------------------------------------------------------------------------------------------ scoring


def evaluate(stage: Stage, recs: Mapping[int, Sequence[str]]) -> dict[str, Any]:
    """The harness's `score` (leave-last-out) or `summarize_fraction` (last-20%-out), with standard errors
    and the cold-start buckets."""
    if stage.fraction:
        report = metrics.summarize_fraction(recs, stage.held_out, catalog=stage.catalog, users=stage.users)
        report["popularity_bias"] = metrics.popularity_bias((recs.get(u, ()) for u in stage.users), stage.viewers)
        return report
    assert stage.held is not None
    report = offline.score(recs, stage.held, stage.users, stage.data.movies, stage.catalog, stage.viewers)
    report["se"] = metrics.standard_errors(recs, stage.held_out, stage.users)
    report["cold_start"] = metrics.cold_start(recs, stage.held_out, stage.history_lengths, stage.viewers,
                                              users=stage.users)
    return report


def _key(report: Mapping[str, Any]) -> tuple[float, float]:
    return report["hit_rate_at_20"], report.get("ndcg_at_20", report.get("recall_at_20", 0.0))


class Service:
    """The service's recommendations on a stage for one collaborative variant (collection rebuilt by the
    real job, inputs read as the service reads them), ranked for any RankConfig and MMR weight."""

    def __init__(self, stage: Stage, name: str, settings: ServiceSettings | None = None):
        from db_utils.engine import create
        from embeddings.collab_job import build_collab
        from embeddings.store import VectorStore

        collab = COLLAB_VARIANTS[name]
        # a collection per variant (a collection keeps the dimension it was created with), built once
        store = VectorStore(dataclasses.replace(stage.built.collab.settings, collection=f"movies_cf_{name}"))
        if not store.count():
            engine = create(stage.built.db_url)
            build_collab(engine, store, collab)
            engine.dispose()
        built = dataclasses.replace(stage.built, collab=store)
        self.inputs = offline.read_inputs(built, stage.users, settings or ServiceSettings.from_env({}))
        ids, vectors = item_vectors(stage.data, collab)  # what the collection holds, for MMR
        self.row = {m: i for i, m in enumerate(ids)}
        self.vectors = np.vstack([vectors, np.zeros((1, vectors.shape[1]), dtype=np.float32)])
        self._pools: dict[tuple[RankConfig, int | None], dict[int, list[tuple[str, float]]]] = {}

    def pool(self, config: RankConfig, history: int | None = None) -> dict[int, list[tuple[str, float]]]:
        """rank's POOL best per user; ``history`` cuts each history to its most recent movies."""
        if (config, history) not in self._pools:
            from inference.ranking import blend_neighbours, rank

            wide = dataclasses.replace(config, n_results=POOL)
            blended = blend_neighbours([(wide.content_weight, self.inputs.content),
                                        (wide.collab_weight, self.inputs.collab)])
            self._pools[config, history] = {
                u: [(s.movie_id, s.score) for s in rank(h[:history], blended, self.inputs.popular, wide)]
                for u, h in self.inputs.histories.items()}
        return self._pools[config, history]

    def recommend(self, config: RankConfig, mmr_weight: float = 0.0, history: int | None = None,
                  drop: Mapping[int, set[str]] | None = None) -> dict[int, list[str]]:
        """The lists; ``drop`` removes each user's given movies (e.g. every watched one, not only the 50
        of the history the ranking reads) from the pool before the re-rank."""
        out: dict[int, list[str]] = {}
        missing = len(self.vectors) - 1
        for user, pooled in self.pool(config, history).items():
            scored = [(m, v) for m, v in pooled if m not in drop.get(user, ())] if drop else pooled
            ids = [m for m, _ in scored]
            if mmr_weight == 0 or not ids:
                out[user] = ids[:config.n_results]
                continue
            vectors = self.vectors[[self.row.get(m, missing) for m in ids]]
            out[user] = mmr(ids, [s for _, s in scored], vectors, mmr_weight, config.n_results)
        return out


# ------------------------------------------------------------------------------------------------ printing


def fmt(report: Mapping[str, Any]) -> str:
    se = report.get("se", {})
    parts = [f"hit@20 {100 * report['hit_rate_at_20']:5.1f}%"
             + (f" ±{100 * se['hit_rate_at_20']:.1f}" if se else f" ±{100 * report.get('hit_rate_at_20_se', 0):.1f}"),
             f"hit@10 {100 * report['hit_rate_at_10']:5.1f}%"]
    if "ndcg_at_20" in report:
        parts += [f"ndcg {report['ndcg_at_20']:.4f}", f"mrr {report['mrr']:.4f}"]
    if "recall_at_20" in report:
        parts.append(f"recall@20 {100 * report['recall_at_20']:5.1f}% ±{100 * report['recall_at_20_se']:.1f}")
    parts.append(f"cov {100 * report['coverage_global']:5.1f}%")
    parts.append(f"viewers/rec {report['popularity_bias']['mean_viewers']:.0f}")
    return "  ".join(parts)


def table(title: str, rows: Mapping[str, Mapping[str, Any]]) -> None:
    print(f"\n== {title}")
    width = max(len(n) for n in rows)
    for name, report in rows.items():
        print(f"  {name:<{width}}  {fmt(report)}")
    cold = {n: r["cold_start"] for n, r in rows.items() if "cold_start" in r}
    if cold:
        labels = list(next(iter(cold.values())))
        print("  cold start, hit@20 (users): " + ", ".join(
            f"{lab} ({next(iter(cold.values()))[lab]['users']})" for lab in labels))
        for name, buckets in cold.items():
            print(f"    {name:<{width}}  " + "  ".join(f"{100 * buckets[lab]['hit_rate_at_20']:5.1f}%"
                                                     for lab in labels))


def paired(stage: Stage, a: Mapping[int, Sequence[str]], b: Mapping[int, Sequence[str]]) -> dict[str, Any]:
    """McNemar exact on hit@20 (leave-last-out) or on 'any held-out movie in the top 20' (last-20%-out)."""
    if stage.fraction:  # one stand-in target per user, "hit" when any held-out movie is in the top 20
        held_out = {u: "\0any-held-out" for u in stage.users}

        def hits(recs: Mapping[int, Sequence[str]]) -> dict[int, list[str]]:
            return {u: [held_out[u]] if set(stage.held_out[u]) & set(recs.get(u, ())[:20]) else []
                    for u in stage.users}

        a, b = hits(a), hits(b)
    else:
        held_out = stage.held_out
    return dataclasses.asdict(metrics.paired_test(a, b, held_out, stage.users))


# ------------------------------------------------------------------------------------------------ the study


def tune_baselines(stage: Stage, ease_grid: Sequence[float]) -> tuple[dict[str, Any], float, float]:
    """EASE's lambda and ALS's regularisation by validation hit@20."""
    ease_rows = {lam: evaluate(stage, baselines.ease(stage.data, stage.users, lam=lam)) for lam in ease_grid}
    als_rows = {reg: evaluate(stage, baselines.als(stage.data, stage.users, regularization=reg))
                for reg in ALS_REGULARIZATIONS}
    rows = {f"ease lam={k:g}": v for k, v in ease_rows.items()}
    rows.update({f"als reg={k:g}": v for k, v in als_rows.items()})
    lam = max(ease_rows, key=lambda k: _key(ease_rows[k]))
    reg = max(als_rows, key=lambda k: _key(als_rows[k]))
    return rows, lam, reg


def baseline_lists(stage: Stage, lam: float, reg: float, seed: int) -> dict[str, dict[int, list[str]]]:
    data, users = stage.data, stage.users
    return {
        "most_popular": baselines.most_popular(data, users),
        "item_knn": baselines.item_knn(data, users),
        f"ease (lam {lam:g})": baselines.ease(data, users, lam=lam),
        f"ease (lam {lam:g}) / (viewers+1)^0.3": baselines.ease(data, users, lam=lam, popularity_damping=0.3),
        f"als (128 f, reg {reg:g})": baselines.als(data, users, regularization=reg, seed=seed),
    }


@dataclass(frozen=True)
class Choice:
    collab: str
    rank: RankConfig
    mmr_weight: float

    def label(self) -> str:
        return (f"service {self.collab} cw={self.rank.content_weight:g} damp={self.rank.popularity_damping:g}"
                f" mmr={self.mmr_weight:g}")


def grid(stage: Stage, variants: Sequence[str], log: Callable[[str], None]) -> list[tuple[Choice, dict[str, Any]]]:
    """Every (collaborative variant, content weight, damping, MMR weight) on the stage."""
    results = []
    for name in variants:
        started = time.perf_counter()
        service = Service(stage, name)
        for cw in CONTENT_WEIGHTS:
            for damping in DAMPINGS:
                config = dataclasses.replace(RankConfig(), content_weight=cw, popularity_damping=damping)
                for weight in MMR_WEIGHTS:
                    choice = Choice(name, config, weight)
                    results.append((choice, evaluate(stage, service.recommend(config, weight))))
        log(f"  grid {name}: {time.perf_counter() - started:.0f} s")
    return results


def pick(results: Sequence[tuple[Choice, dict[str, Any]]]) -> tuple[Choice, dict[str, Any]]:
    """Best hit@20 among the grid points with global coverage >= the target (best hit@20 overall if none)."""
    eligible = [r for r in results if r[1]["coverage_global"] >= COVERAGE_TARGET] or list(results)
    return max(eligible, key=lambda r: _key(r[1]))


def headline(report: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("users", "hit_rate_at_20", "hit_rate_at_10", "ndcg_at_20", "mrr", "recall_at_20", "coverage_global",
            "coverage_local", "se", "cold_start", "popularity_bias", "hit_rate_at_20_se", "recall_at_20_se")
    return {k: report[k] for k in keys if k in report}


def measure(stage: Stage, choices: Sequence[Choice], lam: float, reg: float, seed: int,
            args_drop_watched: bool = False) -> dict[str, Any]:
    """The given service choices and the tuned baselines on one stage, printed side by side, with the
    paired test of the first choice (the pick) and of the defaults against the best baseline."""
    lists: dict[str, dict[int, list[str]]] = {}
    services: dict[str, Service] = {}
    for choice in choices:
        if choice.collab not in services:
            services[choice.collab] = Service(stage, choice.collab)
        lists[choice.label()] = services[choice.collab].recommend(choice.rank, choice.mmr_weight)
    if args_drop_watched:
        matrix = stage.data.matrix.tocsr()
        watched = {u: {stage.data.movies[j] for j in matrix[i].indices} for i, u in enumerate(stage.data.users)}
        for choice in choices:
            lists[choice.label() + " +watched dropped"] = services[choice.collab].recommend(
                choice.rank, choice.mmr_weight, drop=watched)
    base = baseline_lists(stage, lam, reg, seed)
    rows = {name: evaluate(stage, recs) for name, recs in {**lists, **base}.items()}
    table(stage.name, rows)
    best_base = max(base, key=lambda n: _key(rows[n]))
    tests = {f"{name} vs {best_base}": paired(stage, lists[name], base[best_base]) for name in lists}
    for name, test in tests.items():
        print(f"  paired: {name}: diff {100 * test['difference']:+.1f} points "
              f"[{100 * test['ci_low']:+.1f}, {100 * test['ci_high']:+.1f}], only-A {test['only_a']}, "
              f"only-B {test['only_b']}, McNemar exact p = {test['p_value']:.3g}")
    probe = {} if stage.fraction else cold_probe(stage, choices, services, lam)
    return {"rows": {n: headline(r) for n, r in rows.items()}, "paired": tests, "best_baseline": best_base,
            "cold_probe": probe}


PROBE_LENGTHS = (1, 3, 10)


def cold_probe(stage: Stage, choices: Sequence[Choice], services: Mapping[str, Service], lam: float
               ) -> dict[str, dict[str, float]]:
    """Cold-start probe (the demo has no user under 19 movies): every recommender sees only each user's
    ``k`` most recent held-in movies (the service's history order) while its model stays fitted on the
    whole held-in data; hit rate at 20 of the held-out movie."""
    out: dict[str, dict[str, float]] = {}
    for k in PROBE_LENGTHS:
        lists: dict[str, Mapping[int, Sequence[str]]] = {}
        first = services[choices[0].collab]
        histories = {u: [m for m, _ in first.inputs.histories[u][:k]] for u in stage.users}
        for choice in choices:
            lists[choice.label()] = services[choice.collab].recommend(choice.rank, choice.mmr_weight, history=k)
        lists["most_popular"] = baselines.most_popular(stage.data, stage.users)
        lists["item_knn"] = baselines.item_knn(stage.data, stage.users, histories=histories)
        lists[f"ease (lam {lam:g})"] = baselines.ease(stage.data, stage.users, lam=lam, histories=histories)
        for name, recs in lists.items():
            hits = sum(metrics.hit_at_k(recs.get(u, ()), stage.held_out[u], 20) for u in stage.users)
            out.setdefault(name, {})[f"history_{k}"] = hits / len(stage.users)
    print(f"  cold-start probe, hit@20 with the history cut to {', '.join(map(str, PROBE_LENGTHS))} movies:")
    for name, row in out.items():
        print(f"    {name:<48}  " + "  ".join(f"{100 * v:5.1f}%" for v in row.values()))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--splits", nargs="+", default=["val", "test", "fraction"],
                        choices=["val", "test", "fraction"], help="what to run (val tunes; the others report)")
    parser.add_argument("--cache-dir", default="data/eval_cache", help="the harness's MiniLM/demo cache")
    parser.add_argument("--demo-users", type=int, default=None, help="a seeded slice of light users (fast)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variants", nargs="+", default=list(COLLAB_VARIANTS), choices=list(COLLAB_VARIANTS))
    parser.add_argument("--ease-grid", type=float, nargs="+", default=list(baselines.EASE_GRID))
    parser.add_argument("--choice", help="JSON of a previous run: reuse its validation pick and baselines' "
                                         "parameters instead of tuning (val then re-scores it, no grid)")
    parser.add_argument("--drop-watched", action="store_true",
                        help="also score each service row with every held-in movie dropped from rank's 50 (the "
                             "service itself only skips the 50 history movies it reads)")
    parser.add_argument("--out", help="write every figure as JSON here")
    args = parser.parse_args(argv)
    started_all = time.perf_counter()
    result: dict[str, Any] = {"command": " ".join(sys.argv), "splits": {}}
    default = Choice("svd64", RankConfig(), 0.0)

    def log(text: str) -> None:
        print(text, flush=True)

    with tempfile.TemporaryDirectory(prefix="quality-study-") as tmp:
        if args.choice:
            with open(args.choice, encoding="utf-8") as fh:
                saved = json.load(fh)["pick"]
            best = Choice(saved["collab"], RankConfig(**{k: tuple(v) if isinstance(v, list) else v
                                                         for k, v in saved["rank"].items()}), saved["mmr_weight"])
            lam, reg = saved["ease_lambda"], saved["als_regularization"]
            if "val" in args.splits:  # the saved pick re-scored on validation (no grid)
                stage = leave_last_out_stage("validation (leave-last-out, skip_last=1)", 1,
                                             os.path.join(tmp, "val"), args)
                result["splits"]["validation"] = measure(stage, [best] if best == default else [best, default],
                                                         lam, reg, args.seed, args.drop_watched)
        elif "val" in args.splits:
            stage = leave_last_out_stage("validation (leave-last-out, skip_last=1)", 1, os.path.join(tmp, "val"),
                                         args)
            log(f"harness, validation: service hit@20 {100 * stage.harness['hit_rate_at_20']:.1f}% "
                f"cov {100 * stage.harness['coverage_global']:.1f}%")
            tuned, lam, reg = tune_baselines(stage, args.ease_grid)
            table("validation: baseline grids", tuned)
            results = grid(stage, args.variants, log)
            best, best_report = pick(results)
            ranked = sorted(results, key=lambda r: _key(r[1]), reverse=True)
            print("\n== validation: the grid's best ten by hit@20 (any coverage), then the pick (coverage >= 30%)")
            for choice, report in ranked[:10]:
                print(f"  {choice.label():<48}  {fmt(report)}")
            per_method = {name: max((r for r in results if r[0].collab == name), key=lambda r: _key(r[1]))
                          for name in args.variants}
            for name, (choice, report) in per_method.items():
                print(f"  best of {name}: {choice.label():<48}  {fmt(report)}")
            result["grid"] = [{"choice": c.label(), **{k: r[k] for k in ("hit_rate_at_20", "ndcg_at_20", "mrr",
                                                                          "coverage_global")}} for c, r in results]
            result["ease_lambda"], result["als_regularization"] = lam, reg
            print(f"  pick: {best.label()}  {fmt(best_report)}")
            result["splits"]["validation"] = measure(stage, [best, default], lam, reg, args.seed, args.drop_watched)
        else:
            best, lam, reg = default, baselines.EASE_LAMBDA, baselines.ALS_REGULARIZATION
        result["pick"] = {"collab": best.collab, "rank": dataclasses.asdict(best.rank), "mmr_weight": best.mmr_weight,
                          "ease_lambda": lam, "als_regularization": reg}
        choices = [best] if best == default else [best, default]
        if "test" in args.splits:
            stage = leave_last_out_stage("test (leave-last-out, skip_last=0)", 0, os.path.join(tmp, "test"), args)
            log(f"harness, test: service hit@20 {100 * stage.harness['hit_rate_at_20']:.1f}% "
                f"cov {100 * stage.harness['coverage_global']:.1f}%")
            result["splits"]["test"] = measure(stage, choices, lam, reg, args.seed, args.drop_watched)
        if "fraction" in args.splits:
            stage = fraction_stage(os.path.join(tmp, "fraction"), args)
            result["splits"]["last_20pct_out"] = measure(stage, choices, lam, reg, args.seed, args.drop_watched)
    result["seconds"] = round(time.perf_counter() - started_all, 1)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w", encoding="utf-8") as fh:
            json.dump(result, fh, indent=1, default=str)
    summary = [f"pick {best.label()}"]
    for split, block in result["splits"].items():
        ours, base = block["rows"][best.label()], block["rows"][block["best_baseline"]]
        summary.append(f"{split}: {100 * ours['hit_rate_at_20']:.1f}% cov {100 * ours['coverage_global']:.1f}% vs "
                       f"{block['best_baseline']} {100 * base['hit_rate_at_20']:.1f}%")
    print("\nsummary: " + "; ".join(summary) + f" ({result['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
