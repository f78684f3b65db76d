"""The real all-MiniLM-L6-v2 on a small catalog: vectors are sane and neighbours make sense."""

import os

import numpy as np
import pytest

from embeddings.catalog import load_csv
from embeddings.text import movie_text

DATA = os.path.join(os.path.dirname(__file__), "..", "data")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def catalog_vectors(encoder):
    movies = list(load_csv(os.path.join(DATA, "small_catalog.csv")))
    ids = [m["id"] for m in movies]
    return ids, encoder.encode([movie_text(m) for m in movies])


def test_vectors_are_normalized_384_float32(catalog_vectors):
    ids, vectors = catalog_vectors
    assert vectors.shape == (len(ids), 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_identical_input_gives_identical_vectors(encoder, catalog_vectors):
    _ids, vectors = catalog_vectors
    again = encoder.encode([movie_text({"id": "x", "title": "Toy Story", "year": 1995})] * 2)
    assert np.array_equal(again[0], again[1])
    movies = list(load_csv(os.path.join(DATA, "small_catalog.csv")))
    np.testing.assert_allclose(encoder.encode([movie_text(m) for m in movies[:5]]), vectors[:5], atol=1e-6)


def test_toy_story_is_near_toy_story_2_and_unrelated_titles_are_far(catalog_vectors):
    ids, vectors = catalog_vectors
    sims = vectors @ vectors[ids.index("toy+story+2+1999")]
    ranked = [ids[i] for i in np.argsort(-sims) if ids[i] != "toy+story+2+1999"]
    assert ranked[0] == "toy+story+1995"
    toy = sims[ids.index("toy+story+1995")]
    assert toy > 0.6
    for unrelated in ("schindlers+list+1993", "the+silence+of+the+lambs+1991", "psycho+1960",
                      "the+godfather+1972", "pride+prejudice+2005", "heat+1995"):
        assert sims[ids.index(unrelated)] < min(0.4, toy - 0.3), unrelated


def test_empty_input_gives_empty_array(encoder):
    assert encoder.encode([]).shape == (0, 384)
