"""The embedding job end to end on the real model, SQLite and ChromaDB: incremental, crash-safe, complete."""

from __future__ import annotations

import csv
import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import uuid

import numpy as np
import pytest
from sqlalchemy import text

from db_utils import migrate, queries
from db_utils.engine import create
from embeddings.catalog import CatalogError
from embeddings.config import EmbeddingSettings
from embeddings.job import build
from embeddings.store import VectorStore
from embeddings.text import movie_text

pytestmark = [pytest.mark.integration, pytest.mark.slow]
DATA = os.path.join(os.path.dirname(__file__), "..", "data")
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


_MEMO: dict[str, np.ndarray] = {}


class CountingEncoder:
    """The session's real encoder, recording the texts the job asks for and failing on purpose after
    `fail_after` calls. Vectors of texts already encoded in this session are reused (the machine is slow
    and these tests are about which texts the job encodes; the vectors' determinism is tested without it)."""

    def __init__(self, inner, fail_after: int | None = None, fingerprint: str | None = None) -> None:
        self.inner, self.fail_after, self.texts, self.calls = inner, fail_after, [], 0
        self.fingerprint = fingerprint or inner.fingerprint

    def encode(self, texts, show_progress=False):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise RuntimeError("injected failure")
        self.calls += 1
        self.texts.extend(texts)
        new = [t for t in dict.fromkeys(texts) if t not in _MEMO]
        _MEMO.update(zip(new, self.inner.encode(new), strict=True))
        return np.stack([_MEMO[t] for t in texts])


@pytest.fixture
def env(tmp_path):
    """A migrated SQLite store, an embedded Chroma dir, and settings pointing at both."""
    url = f"sqlite:///{tmp_path}/recsys.db"
    migrate.upgrade(url)
    engine = create(url)
    settings = EmbeddingSettings(chroma_path=str(tmp_path / "chroma"), batch_size=8)
    catalog = tmp_path / "catalog.csv"
    shutil.copy(os.path.join(DATA, "small_catalog.csv"), catalog)
    yield engine, settings, str(catalog), url
    engine.dispose()


def run(env, encoder, source="catalog", **kw):
    engine, settings, catalog, _ = env
    settings = dataclasses.replace(settings, **kw)
    return build(catalog if source == "catalog" else source, settings=settings, engine=engine,
                 encoder=encoder, progress=False)


def test_full_then_unchanged_then_one_changed_overview(env, encoder):
    first = CountingEncoder(encoder)
    report = run(env, first)
    assert (report.loaded, report.encoded, report.vectors) == (30, 30, 30) and len(first.texts) == 30
    assert report.changed and report.version
    store = VectorStore(env[1])
    assert store.version == report.version
    toy2 = store.neighbours(["toy+story+2+1999"], k=5)["toy+story+2+1999"]
    assert toy2[0][0] == "toy+story+1995" and toy2[0][1] > 0.6
    assert store._collection.get(ids=["heat+1995"])["metadatas"][0] == {
        "title": "Heat", "year": 1995, "genres": "Action|Crime|Thriller", "popularity": 17.9}

    second = CountingEncoder(encoder)
    again = run(env, second)
    assert second.texts == [] and again.encoded == 0 and not again.changed
    assert again.version == report.version

    catalog = env[2]
    with open(catalog, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    next(r for r in rows if r["id"] == "heat+1995")["overview"] = "A cop hunts a crew of bank robbers."
    with open(catalog, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    third = CountingEncoder(encoder)
    changed = run(env, third)
    assert changed.encoded == 1 and len(third.texts) == 1 and "bank robbers" in third.texts[0]
    assert changed.version != report.version and store.version == changed.version


def test_stream_registered_movies_are_embedded_and_gone_movies_removed(env, encoder):
    engine = env[0]
    run(env, CountingEncoder(encoder))
    with engine.begin() as conn:
        queries.ensure_movies(conn, ["the+iron+giant+1999"])
        conn.execute(text("DELETE FROM movies WHERE id = 'psycho+1960'"))
    enc = CountingEncoder(encoder)
    report = run(env, enc, source=None)
    assert enc.texts == ["the iron giant (1999)."]
    assert (report.encoded, report.deleted, report.vectors) == (1, 1, 30)
    store = VectorStore(env[1])
    assert "psycho+1960" not in store.ids()
    assert store._collection.get(ids=["the+iron+giant+1999"])["metadatas"][0] == {
        "title": "the iron giant", "year": 1999}
    assert run(env, CountingEncoder(encoder), source=None).encoded == 0  # the slug text stays embedded


def test_failure_mid_way_loses_one_batch_and_a_rerun_completes(env, encoder):
    engine, settings = env[0], env[1]
    with pytest.raises(RuntimeError, match="injected failure"):
        run(env, CountingEncoder(encoder, fail_after=2))
    store = VectorStore(settings)
    with engine.connect() as conn:
        remaining = queries.movies_to_embed(conn)
    assert store.count() == 16 and len(remaining) == 14 and store.dirty  # two steps of 8 were written
    enc = CountingEncoder(encoder)
    report = run(env, enc)
    assert report.encoded == 14 and report.vectors == 30 and not store.dirty and store.version
    assert run(env, CountingEncoder(encoder)).encoded == 0


def test_lost_vector_store_is_rebuilt(env, encoder, tmp_path):
    run(env, CountingEncoder(encoder))
    enc = CountingEncoder(encoder)
    report = run(env, enc, chroma_path=str(tmp_path / "fresh-chroma"))
    assert (report.unmarked, report.encoded, report.vectors) == (30, 30, 30)


def test_another_model_re_embeds_every_movie_and_a_crash_mid_way_is_finished(env, encoder):
    engine, settings = env[0], env[1]
    assert run(env, CountingEncoder(encoder)).encoded == 30
    store = VectorStore(settings)
    assert store.model == encoder.fingerprint

    other = "sha256:0123456789abcdef"
    with pytest.raises(RuntimeError, match="injected failure"):
        run(env, CountingEncoder(encoder, fail_after=1, fingerprint=other))
    with engine.connect() as conn:
        remaining = queries.movies_to_embed(conn)
    assert store.model == other and store.dirty and len(remaining) == 22  # one step of 8 re-embedded

    enc = CountingEncoder(encoder, fingerprint=other)
    report = run(env, enc)
    assert (report.encoded, report.vectors, report.model_changed) == (22, 30, False) and not store.dirty
    assert sorted(enc.texts) == sorted(movie_text(m) for m in remaining)

    back = run(env, CountingEncoder(encoder))  # back to the real model: everything again, new version
    assert (back.model_changed, back.unmarked, back.encoded) == (True, 30, 30)
    assert back.version != report.version and store.model == encoder.fingerprint
    assert run(env, CountingEncoder(encoder)).encoded == 0


def test_a_collection_without_a_recorded_model_is_adopted_without_re_embedding(env, encoder):
    first = run(env, CountingEncoder(encoder))
    store = VectorStore(env[1])
    metadata = dict(store._collection.metadata)
    del metadata["model"]
    store._collection.modify(metadata=metadata)  # as a build before model fingerprints left it
    assert store.model == ""
    again = run(env, CountingEncoder(encoder))
    assert (again.encoded, again.changed, again.version) == (0, False, first.version)
    assert store.model == encoder.fingerprint


def test_identical_catalog_gives_identical_vectors(env, encoder, tmp_path):
    run(env, CountingEncoder(encoder))
    other = EmbeddingSettings(chroma_path=str(tmp_path / "other"), batch_size=5)
    url = f"sqlite:///{tmp_path}/other.db"
    migrate.upgrade(url)
    engine = create(url)
    build(env[2], settings=other, engine=engine, encoder=encoder, progress=False)
    ids = ["toy+story+1995", "heat+1995", "the+lion+king+1994"]
    a, b = VectorStore(env[1]).get(ids), VectorStore(other).get(ids)
    for movie_id in ids:
        np.testing.assert_allclose(a[movie_id], b[movie_id], atol=1e-6)
    engine.dispose()


def test_api_source_fills_untitled_movies(env, encoder, movie_api, tmp_path):
    engine = env[0]
    with engine.begin() as conn:
        queries.ensure_movies(conn, ["toy+story+1995", "heat+1995", "unknown+film+2003"])
    enc = CountingEncoder(encoder)
    report = run(env, enc, source="api", movie_api_url=movie_api.url, api_cache_dir=str(tmp_path / "cache"))
    assert report.loaded == 2 and report.skipped == {"not found": 1} and report.encoded == 3
    assert any("Keywords: jealousy, toy, boy, friendship." in t for t in enc.texts)
    assert "unknown film (2003)." in enc.texts
    with engine.connect() as conn:
        assert queries.untitled_movie_ids(conn) == ["unknown+film+2003"]
    again = run(env, CountingEncoder(encoder), source="api", movie_api_url=movie_api.url,
                api_cache_dir=str(tmp_path / "cache"))
    assert again.encoded == 0 and movie_api.requests["toy+story+1995"] == 1


def test_keywords_are_kept_so_a_re_embedding_from_the_table_gives_the_same_text(env, encoder, movie_api,
                                                                               tmp_path):
    engine = env[0]
    with engine.begin() as conn:
        queries.ensure_movies(conn, ["toy+story+1995"])
    first = CountingEncoder(encoder)
    run(env, first, source="api", movie_api_url=movie_api.url, api_cache_dir=str(tmp_path / "cache"))
    with engine.connect() as conn:
        row = conn.execute(text("SELECT keywords FROM movies WHERE id = 'toy+story+1995'")).one()
    assert row.keywords == "jealousy|toy|boy|friendship"
    # No source this time, a new vector store: every movie is re-embedded from the table alone.
    again = CountingEncoder(encoder)
    report = run(env, again, source=None, chroma_path=str(tmp_path / "fresh-chroma"))
    assert report.encoded == 1 and again.texts == first.texts
    assert "Keywords: jealousy, toy, boy, friendship." in again.texts[0]


def test_job_against_a_chroma_server(env, encoder, chroma_server):
    host, port = chroma_server
    name = f"movies_{uuid.uuid4().hex[:8]}"
    report = run(env, CountingEncoder(encoder), chroma_host=host, chroma_port=port, collection=name)
    assert report.vectors == 30
    server_store = VectorStore(dataclasses.replace(env[1], chroma_host=host, chroma_port=port, collection=name))
    assert server_store.neighbours(["toy+story+2+1999"], k=1)["toy+story+2+1999"][0][0] == "toy+story+1995"
    assert server_store.version == report.version


def test_bad_catalog_is_refused_with_one_sentence(env, encoder, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("movie,name\n")
    with pytest.raises(CatalogError, match="lacks the column"):
        build(str(bad), settings=env[1], engine=env[0], encoder=encoder, progress=False)
    with pytest.raises(CatalogError, match="unknown catalog"):
        build("catalog.json", settings=env[1], engine=env[0], encoder=encoder, progress=False)
    with env[0].connect() as conn:
        assert queries.count_rows(conn, "movies") == 0


def _cli(args, url, chroma, **popen):
    environment = {**os.environ, "DATABASE_URL": url, "CHROMA_PATH": chroma, "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen([sys.executable, "-m", "embeddings", "build", *args], cwd=ROOT, env=environment,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def test_cli_refuses_a_missing_file_in_one_line(env, tmp_path):
    proc = _cli(["--catalog", str(tmp_path / "nope.csv")], env[3], str(tmp_path / "c"))
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1 and out == ""
    assert err.strip().splitlines()[-1] == f"error: embeddings build failed: catalog file {tmp_path}/nope.csv " \
                                           "does not exist."


def test_cli_killed_after_first_batch_then_rerun_completes(env, encoder):
    engine, settings, catalog, url = env
    proc = _cli(["--catalog", catalog, "--batch-size", "8", "--no-progress"], url, settings.chroma_path)
    try:
        for line in proc.stderr:
            if '"batch_committed"' in line:
                proc.send_signal(signal.SIGKILL)
                break
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    with engine.connect() as conn:
        left = len(queries.movies_to_embed(conn))
    assert 0 < left < 30
    report = run(env, CountingEncoder(encoder))
    assert report.encoded == left and report.vectors == 30
