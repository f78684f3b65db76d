"""The embedding job: catalog -> `movies` table -> vectors of new or changed movies -> ChromaDB.

Steps of `build`:
1. load the catalog source into `movies` (upsert_movies, with `content_hash` of each movie's text);
2. reconcile SQL and Chroma: when the collection records another model's fingerprint than the encoder's
   (MODEL_PATH changed), every movie is unmarked first, so all are re-embedded with the new model; vectors
   of movies "gone" (ids in Chroma that are not in the movies table) are deleted; movies marked embedded
   whose vector is missing from Chroma are unmarked;
3. embed every movie whose `content_hash` differs from `embedded_hash` (or that was never embedded,
   which includes movies the parser registered without a title: they are embedded from their slug),
   longest texts first, in commit steps of `batch_size`: encode, upsert the vectors into Chroma, then set
   `embedded_hash` in SQL. A crash loses at most the step in flight; a re-run finishes the job;
4. stamp a new collection version when anything changed (the service drops its caches on a new version).

An unchanged catalog computes zero vectors. Removing a movie: delete its row, then run the job. While a
re-embedding for a new model runs, the collection holds both models' vectors (the service keeps its cached
neighbour lists until the new version is stamped); build into another CHROMA_COLLECTION to avoid even that.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np
from sqlalchemy import Engine, inspect

from db_utils import queries
from embeddings.catalog import CatalogError, LoadStats, MovieApi, load_csv, load_kaggle
from embeddings.config import EmbeddingSettings
from embeddings.encoder import Encoder
from embeddings.store import VectorStore
from embeddings.text import chroma_metadata, content_hash, movie_text

log = logging.getLogger("embeddings.job")
SQL_CHUNK = 5000


class TextEncoder(Protocol):
    """What the job needs of an encoder: vectors, and the fingerprint of the model that makes them
    (`embeddings.fingerprint.model_fingerprint`), recorded with the collection."""

    @property
    def fingerprint(self) -> str: ...

    def encode(self, texts: list[str], show_progress: bool = False) -> np.ndarray: ...


@dataclass
class BuildReport:
    """What one build did: catalog rows loaded/skipped, vectors encoded/deleted, the version it left."""

    source: str
    loaded: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    encoded: int = 0
    deleted: int = 0
    unmarked: int = 0
    model_changed: bool = False
    changed: bool = False
    version: str = ""
    vectors: int = 0
    seconds: float = 0.0


def _log(event: str, **fields: Any) -> None:
    log.info({"event": event, **fields})


def load_source(source: str, settings: EmbeddingSettings, engine: Engine, stats: LoadStats) -> Iterator[dict]:
    """Movies of a catalog source: `PATH.csv`, `kaggle:PATH`, `movielens` (the demo catalog) or `api`
    (the movie API, for movies registered from the stream without a title)."""
    if source == "movielens":
        from embeddings.movielens import write_catalog

        with tempfile.TemporaryDirectory(prefix="movielens-") as tmp:
            write_catalog(os.path.join(tmp, "catalog.csv"))
            yield from load_csv(os.path.join(tmp, "catalog.csv"), stats)
    elif source == "api":
        if not settings.movie_api_url:
            raise CatalogError("--catalog api needs MOVIE_API_URL to be set.")
        with engine.connect() as conn:
            ids = queries.untitled_movie_ids(conn)
        api = MovieApi(settings.movie_api_url, settings.api_cache_dir, settings.api_timeout,
                       settings.api_retries, workers=settings.api_workers)
        yield from api.fetch_many(ids, stats)
    elif source.startswith("kaggle:"):
        yield from load_kaggle(source.removeprefix("kaggle:"), stats)
    elif source.endswith(".csv"):
        yield from load_csv(source, stats)
    else:
        raise CatalogError(f"unknown catalog {source!r}: use PATH.csv, kaggle:PATH, movielens or api.")


def load_catalog(engine: Engine, movies: Iterator[dict]) -> dict[str, str]:
    """Upsert movies with their content_hash in chunks; return each loaded movie's embedded text by id."""
    texts: dict[str, str] = {}
    now = datetime.now(UTC).replace(tzinfo=None)
    chunk: list[dict] = []

    def flush() -> None:
        with engine.begin() as conn:
            queries.upsert_movies(conn, chunk)
        chunk.clear()

    for movie in movies:
        text = movie_text(movie)
        texts[movie["id"]] = text
        chunk.append({**movie, "content_hash": content_hash(text), "updated_at": now})
        if len(chunk) >= SQL_CHUNK:
            flush()
    if chunk:
        flush()
    return texts


def plan(rows: list[dict], texts: dict[str, str]) -> list[tuple[str, str, str, dict]]:
    """(id, text, hash to record, metadata) for each row to embed, longest text first (so batches pad
    little). The recorded hash is the row's content_hash, or the text's hash for a title-less movie."""
    out = []
    for row in rows:
        text = texts.get(row["id"]) or movie_text(row)
        out.append((row["id"], text, row["content_hash"] or content_hash(text), chroma_metadata(row)))
    out.sort(key=lambda item: (-len(item[1]), item[0]))
    return out


def build(source: str | None, *, settings: EmbeddingSettings, engine: Engine,
          encoder: TextEncoder | None = None, store: VectorStore | None = None,
          progress: bool | None = None) -> BuildReport:
    """Run the job once (see the module docstring); `source` None only reconciles and embeds what SQL holds."""
    started = time.perf_counter()
    if not inspect(engine).has_table("movies"):
        raise CatalogError("the SQL store has no movies table: run `python -m db_utils migrate` first.")
    report = BuildReport(source=source or "-")
    texts: dict[str, str] = {}
    if source is not None:
        stats = LoadStats()
        texts = load_catalog(engine, load_source(source, settings, engine, stats))
        report.loaded, report.skipped = stats.loaded, dict(stats.skipped)
        _log("catalog_loaded", source=source, loaded=stats.loaded, skipped=dict(stats.skipped))

    store = store or VectorStore(settings)
    if encoder is None:
        encoder = Encoder.from_settings(settings)  # loads no model until it encodes
    with engine.connect() as conn:
        hashes = queries.movie_embedded_hashes(conn)
    hashes = _check_model(encoder.fingerprint, store, engine, hashes, report)
    in_chroma = store.ids()
    gone = sorted(in_chroma - hashes.keys())
    lost = sorted(m for m, h in hashes.items() if h is not None and m not in in_chroma)
    if lost:  # marked in SQL but absent from Chroma (a wiped or different vector store): rebuild them
        with engine.begin() as conn:
            report.unmarked += queries.mark_embedded(conn, [(m, None) for m in lost])
    with engine.connect() as conn:
        todo = plan(queries.movies_to_embed(conn), texts)

    report.changed = bool(gone or todo)
    if report.changed:
        store.mark_dirty()
    if gone:
        store.delete(gone)
        report.deleted = len(gone)
    if todo:
        report.encoded = _embed(todo, settings, engine, encoder, store, progress)
    if report.changed or store.dirty:
        report.version = store.stamp_version()
        report.changed = True
    else:
        report.version = store.version
    report.vectors = store.count()
    report.seconds = round(time.perf_counter() - started, 3)
    _log("build_done", **asdict(report))
    return report


def _check_model(fingerprint: str, store: VectorStore, engine: Engine, hashes: dict[str, str | None],
                 report: BuildReport) -> dict[str, str | None]:
    """Make the collection's recorded model `fingerprint`; return `hashes` as they now stand in SQL.

    Another model recorded: every movie is unmarked (committed) before the new fingerprint is recorded, so
    a crash in between only repeats this step, and no run leaves two models' vectors behind. No model
    recorded (a collection from before fingerprints, or a new one): the fingerprint is recorded as is.
    """
    recorded = store.model
    if recorded == fingerprint:
        return hashes
    if recorded:
        stale = [(m, None) for m, h in hashes.items() if h is not None]
        with engine.begin() as conn:
            report.unmarked += queries.mark_embedded(conn, stale)
        report.model_changed = True
        _log("model_changed", recorded=recorded, model=fingerprint, unmarked=len(stale))
        hashes = dict.fromkeys(hashes)
    store.record_model(fingerprint)
    return hashes


def _embed(todo: list[tuple[str, str, str, dict]], settings: EmbeddingSettings, engine: Engine,
           encoder: TextEncoder, store: VectorStore, progress: bool | None) -> int:
    """Encode, store and mark `todo` in commit steps of `settings.batch_size`; return vectors computed.

    Writing step i (Chroma upsert, then the SQL mark, in one writer thread, in order) overlaps encoding
    step i+1, so the model rarely waits for the store. A crash leaves every finished step committed in
    both stores; only the step being written and the one being encoded are redone by the next run.
    """
    from tqdm import tqdm

    disable = None if progress is None else not progress  # None: a bar only on a terminal
    done = 0

    def write(step: list[tuple[str, str, str, dict]], vectors: np.ndarray) -> int:
        store.upsert([m for m, _, _, _ in step], vectors, [meta for _, _, _, meta in step])
        with engine.begin() as conn:
            queries.mark_embedded(conn, [(m, digest) for m, _, digest, _ in step])
        return len(step)

    with tqdm(total=len(todo), unit="movie", desc="embedding", disable=disable) as bar, \
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="embed-writer") as writer:
        pending: Future[int] | None = None
        for start in range(0, len(todo), settings.batch_size):
            step = todo[start:start + settings.batch_size]
            vectors = encoder.encode([text for _, text, _, _ in step])
            if pending is not None:
                done += pending.result()  # re-raises a failed write: nothing later is written
                _log("batch_committed", done=done, total=len(todo))
            pending = writer.submit(write, step, vectors)
            bar.update(len(step))
        if pending is not None:
            done += pending.result()
            _log("batch_committed", done=done, total=len(todo))
    return done
