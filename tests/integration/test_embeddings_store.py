"""VectorStore against embedded ChromaDB and a real `chroma run` server: the same suite on both."""

import uuid

import numpy as np
import pytest

from embeddings.config import EmbeddingSettings
from embeddings.store import VectorStore

pytestmark = pytest.mark.integration


@pytest.fixture(params=["embedded", "server"])
def store(request, tmp_path):
    """A VectorStore on a fresh collection, embedded (tmp dir) or over HTTP to the session's server."""
    name = f"movies_{uuid.uuid4().hex[:8]}"
    if request.param == "server":
        host, port = request.getfixturevalue("chroma_server")
        settings = EmbeddingSettings(chroma_host=host, chroma_port=port, collection=name, model_path="-")
    else:
        settings = EmbeddingSettings(chroma_path=str(tmp_path / "chroma"), collection=name, model_path="-")
    return VectorStore(settings)


def unit(rows):
    array = np.asarray(rows, dtype=np.float32)
    return array / np.linalg.norm(array, axis=1, keepdims=True)


# four directions in 384-d: a and a2 close, b and c far from a
BASE = np.eye(384, dtype=np.float32)
VECTORS = {
    "a": unit([BASE[0]])[0],
    "a2": unit([BASE[0] + 0.2 * BASE[1]])[0],
    "a3": unit([BASE[0] + 0.6 * BASE[1]])[0],
    "b": unit([BASE[2]])[0],
    "c": unit([-BASE[0]])[0],
}


def fill(store):
    ids = list(VECTORS)
    store.upsert(ids, np.stack([VECTORS[i] for i in ids]), [{"title": i.upper(), "year": 2000} for i in ids])


def test_collection_uses_cosine_and_no_embedding_function(store):
    config = store._collection.configuration
    assert config["hnsw"]["space"] == "cosine"
    assert config.get("embedding_function") is None


def test_upsert_get_count_ids(store):
    assert store.count() == 0 and store.ids() == set() and store.get(["a"]) == {}
    fill(store)
    assert store.count() == 5 and store.ids() == set(VECTORS)
    got = store.get(["b", "a", "missing"])
    assert set(got) == {"a", "b"}
    np.testing.assert_allclose(got["a"], VECTORS["a"], atol=1e-6)
    store.upsert(["a"], unit([BASE[3]]), [{"title": "A again"}])
    np.testing.assert_allclose(store.get(["a"])["a"], BASE[3], atol=1e-6)
    assert store.count() == 5


def test_neighbours_are_batched_ranked_and_exclude_self(store):
    fill(store)
    result = store.neighbours(["a", "b", "missing"], k=2)
    assert set(result) == {"a", "b"}
    assert [n for n, _ in result["a"]] == ["a2", "a3"]
    sims = [s for _, s in result["a"]]
    assert sims[0] == pytest.approx(float(VECTORS["a"] @ VECTORS["a2"]), abs=1e-4)
    assert sims[0] > sims[1]
    everything = store.neighbours(["a"], k=10)["a"]
    assert [n for n, _ in everything][-1] == "c"
    assert everything[-1][1] == pytest.approx(-1.0, abs=1e-4)
    assert len(everything) == 4
    assert store.neighbours([], k=3) == {} and store.neighbours(["a"], k=0) == {}


def test_delete_removes_vectors_and_neighbours(store):
    fill(store)
    store.delete(["a2", "unknown"])
    assert store.ids() == {"a", "a3", "b", "c"}
    assert store.neighbours(["a"], k=1)["a"][0][0] == "a3"


def test_version_is_stamped_and_seen_by_another_store(store):
    assert store.version == "" and not store.dirty
    fill(store)
    store.mark_dirty()
    assert store.dirty and store.version == ""
    first = store.stamp_version()
    reader = VectorStore(store.settings)
    assert reader.version == first and not reader.dirty
    second = store.stamp_version()
    assert second != first and reader.version == second


def test_model_fingerprint_is_recorded_beside_the_version(store):
    assert store.model == ""
    store.record_model("sha256:aaaa")
    first = store.stamp_version()
    store.mark_dirty()
    reader = VectorStore(store.settings)
    assert reader.model == "sha256:aaaa" and reader.version == first and reader.dirty  # none clobbers another
    store.record_model("sha256:bbbb")
    assert reader.model == "sha256:bbbb" and reader.version == first


def test_bad_vectors_are_refused(store):
    with pytest.raises(ValueError, match="expected 2 vectors"):
        store.upsert(["a", "b"], np.zeros((1, 384), dtype=np.float32))


WRITER = """
import sys
import numpy as np
from embeddings.config import EmbeddingSettings
from embeddings.store import VectorStore
store = VectorStore(EmbeddingSettings(chroma_path=sys.argv[1], collection=sys.argv[2], model_path="-"))
store.upsert(["late"], np.eye(384, dtype=np.float32)[[1]] + np.eye(384, dtype=np.float32)[[0]], [{"title": "L"}])
print(store.stamp_version())
"""


def test_a_reader_process_sees_another_process_writes_after_reopen(tmp_path):
    """Embedded Chroma caches its index per process: the service polls `version`, then `reopen()`s."""
    import os
    import subprocess
    import sys

    settings = EmbeddingSettings(chroma_path=str(tmp_path / "chroma"), collection="movies", model_path="-")
    reader = VectorStore(settings)
    fill(reader)
    reader.stamp_version()
    assert reader.neighbours(["a"], k=1)["a"][0][0] == "a2"
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    written = subprocess.run([sys.executable, "-c", WRITER, settings.chroma_path, "movies"], cwd=root,
                             capture_output=True, text=True, timeout=120, check=True).stdout.split()[-1]
    assert reader.version == written  # a fresh metadata read, which reopens the embedded index
    assert reader.count() == 6
    assert [n for n, _ in reader.neighbours(["late"], k=2)["late"]] == ["a3", "a2"]
    reader.reopen()  # explicit reopen works too, and keeps answering
    assert reader.count() == 6 and reader.version == written
    reader.close()
