"""Embedding job throughput beside a bare SentenceTransformer.encode of the same texts, in the same run.

For each catalog (the 9,066-movie MovieLens demo; N ggplot2movies titles from the synth simulator):
  bare    SentenceTransformer.encode(all texts, batch_size=EMBED_ENCODE_BATCH_SIZE, normalized), torch
                                                                                      -> texts/s
  job     embeddings.job.build into a fresh SQLite store and embedded Chroma dir, with the encoder the
          job uses (EMBED_BACKEND, default onnx; its one-time export is done before timing) -> movies/s, % of bare
  cosine  job vectors (read back from Chroma) against the bare fp32 vectors           -> min, mean
  rerun   build again on the unchanged catalog                                        -> seconds (goal < 5 s)
Goals: job >= 95% of bare; cosine >= 0.99; rerun of the large catalog < 5 s.

    python benchmarks/bench_embed.py                    # both catalogs (minutes on 2 cores)
    python benchmarks/bench_embed.py --limit 500        # quick smoke run
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

import numpy as np

from db_utils import migrate
from db_utils.engine import create
from embeddings.catalog import load_csv
from embeddings.config import EmbeddingSettings
from embeddings.encoder import Encoder
from embeddings.job import build
from embeddings.store import VectorStore
from embeddings.text import movie_text


def make_catalogs(workdir: str, synth_movies: int, limit: int | None) -> list[tuple[str, str]]:
    """(name, path) of the demo catalog and the ggplot2movies catalog, cut to `limit` rows when given."""
    from evaluation.simulator.movielens import write_movielens
    from evaluation.simulator.synth import write_catalog

    demo_dir = os.path.join(workdir, "demo")
    write_movielens(demo_dir)
    large = os.path.join(workdir, "ggplot2movies.csv")
    write_catalog(large, synth_movies)
    out = [("movielens demo", os.path.join(demo_dir, "catalog.csv")), (f"ggplot2movies {synth_movies}", large)]
    if limit:
        for _name, path in out:
            with open(path, encoding="utf-8") as handle:
                lines = handle.readlines()[: limit + 1]
            with open(path, "w", encoding="utf-8") as handle:
                handle.writelines(lines)
    return out


class TimedEncoder:
    """The same encoder, timing its calls, to split the job's time into encoding and everything else."""

    def __init__(self, inner: Encoder) -> None:
        self.inner, self.seconds, self.fingerprint = inner, 0.0, inner.fingerprint

    def encode(self, texts, show_progress=False):
        started = time.perf_counter()
        try:
            return self.inner.encode(texts)
        finally:
            self.seconds += time.perf_counter() - started


def bench_one(name: str, path: str, bare_encoder: Encoder, encoder: Encoder, workdir: str, batch_size: int) -> dict:
    movies = list(load_csv(path))
    ids, texts = [m["id"] for m in movies], [movie_text(m) for m in movies]
    started = time.perf_counter()
    bare = bare_encoder.encode(texts)
    bare_s = time.perf_counter() - started

    url = f"sqlite:///{workdir}/{abs(hash(name))}.db"
    migrate.upgrade(url)
    engine = create(url)
    settings = EmbeddingSettings(chroma_path=os.path.join(workdir, f"chroma-{abs(hash(name))}"),
                                 batch_size=batch_size, encode_batch_size=encoder.batch_size)
    timed = TimedEncoder(encoder)
    started = time.perf_counter()
    report = build(path, settings=settings, engine=engine, encoder=timed, progress=False)
    job_s = time.perf_counter() - started
    started = time.perf_counter()
    rerun = build(path, settings=settings, engine=engine, encoder=encoder, progress=False)
    rerun_s = time.perf_counter() - started
    stored = VectorStore(settings).get(ids)
    cosines = np.array([float(stored[m] @ bare[i]) for i, m in enumerate(ids)])
    engine.dispose()
    result = {
        "name": name, "movies": len(ids), "bare_rate": len(ids) / bare_s, "job_rate": len(ids) / job_s,
        "ratio": bare_s / job_s, "own_ratio": timed.seconds / job_s,
        "cos_min": cosines.min(), "cos_mean": cosines.mean(), "rerun_s": rerun_s,
        "encoded": report.encoded, "rerun_encoded": rerun.encoded,
    }
    print(f"{name}: {len(ids)} movies | bare encode {result['bare_rate']:.0f} texts/s ({bare_s:.1f} s) | "
          f"job {result['job_rate']:.0f} movies/s ({job_s:.1f} s) = {100 * result['ratio']:.1f}% of bare; "
          f"its own encode calls {timed.seconds:.1f} s = {100 * result['own_ratio']:.1f}% of the job | "
          f"cosine to bare min {result['cos_min']:.4f} mean {result['cos_mean']:.4f} | "
          f"unchanged re-run {rerun_s:.2f} s, {rerun.encoded} encoded", flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--synth-movies", type=int, default=27000, help="ggplot2movies titles (default 27000)")
    parser.add_argument("--limit", type=int, help="cut each catalog to this many movies (smoke run)")
    parser.add_argument("--batch-size", type=int, default=EmbeddingSettings.batch_size,
                        help="job commit step in movies (default %(default)s)")
    parser.add_argument("--encode-batch-size", type=int, default=EmbeddingSettings.encode_batch_size,
                        help="texts per forward pass, job and bare alike (default %(default)s)")
    args = parser.parse_args(argv)
    import torch

    settings = dataclasses.replace(EmbeddingSettings.from_env(), encode_batch_size=args.encode_batch_size)
    bare_encoder = Encoder(settings.model_path, batch_size=args.encode_batch_size, backend="torch")
    bare_encoder.encode(["warm up the model"])
    encoder = Encoder.from_settings(settings)
    started = time.perf_counter()
    encoder.encode(["warm up the model"])
    print(f"machine: {os.cpu_count()} cores, torch {torch.__version__} threads {torch.get_num_threads()}; "
          f"bare encode: torch; job encoder: {encoder.backend_in_use} (ready in {time.perf_counter() - started:.1f} s, "
          f"graph cache {settings.onnx_dir})", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-embed-") as workdir:
        results = [bench_one(name, path, bare_encoder, encoder, workdir, args.batch_size)
                   for name, path in make_catalogs(workdir, args.synth_movies, args.limit)]
    worst = min(r["ratio"] for r in results)
    large = results[-1]
    own = min(r["own_ratio"] for r in results)
    ok = worst >= 0.95 and min(r["cos_min"] for r in results) >= 0.99 and large["rerun_s"] < 5
    print(f"SUMMARY job/bare >= {100 * worst:.1f}% (goal 95%; encoding is >= {100 * own:.1f}% of job time), "
          f"cosine min "
          f"{min(r['cos_min'] for r in results):.4f} (goal 0.99), unchanged {large['movies']}-movie re-run "
          f"{large['rerun_s']:.2f} s (goal < 5 s): {'all goals met' if ok else 'goal missed'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
