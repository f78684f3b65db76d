"""The ONNX Runtime backend of the encoder: the same vectors as torch, a cached graph, and a safe fallback.

The real model is exported once per test session (about 15 s on 2 cores) into a temporary directory.
"""

from __future__ import annotations

import json
import logging
import os
import shutil

import numpy as np
import pytest

from embeddings import onnx_model
from embeddings.catalog import load_csv
from embeddings.config import default_model_path
from embeddings.encoder import Encoder
from embeddings.text import movie_text

DATA = os.path.join(os.path.dirname(__file__), "..", "data")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return [movie_text(m) for m in load_csv(os.path.join(DATA, "small_catalog.csv"))]


@pytest.fixture(scope="module")
def torch_vectors(texts) -> np.ndarray:
    return Encoder(default_model_path(), batch_size=16, backend="torch").encode(texts)


def test_onnx_vectors_match_torch(encoder, texts, torch_vectors):
    vectors = encoder.encode(texts)
    assert encoder.backend_in_use == "onnx"
    assert vectors.shape == torch_vectors.shape and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    cosines = np.sum(vectors * torch_vectors, axis=1)
    assert cosines.min() >= 0.999, cosines.min()


def test_order_and_batch_size_do_not_change_vectors(encoder, texts):
    """Batches are formed longest text first; every vector still lands at its text's position."""
    one_batch = encoder.encode(texts)
    small = Encoder(default_model_path(), batch_size=3, backend="onnx", onnx_dir=encoder.onnx_dir)
    np.testing.assert_allclose(small.encode(texts), one_batch, atol=1e-5)
    reversed_texts = texts[::-1]
    np.testing.assert_allclose(encoder.encode(reversed_texts), one_batch[::-1], atol=1e-5)


def test_a_cached_graph_is_reused_without_exporting(encoder, monkeypatch):
    def no_export(*_args):
        raise AssertionError("the cached graph should have been used")

    monkeypatch.setattr(onnx_model, "export", no_export)
    again = Encoder(default_model_path(), backend="onnx", onnx_dir=encoder.onnx_dir)
    assert again.encode(["Toy Story (1995)"]).shape == (1, 384)
    assert again.backend_in_use == "onnx"


def test_a_damaged_cached_graph_is_exported_again(encoder, tmp_path, texts, torch_vectors):
    cache = tmp_path / "models"
    shutil.copytree(encoder.onnx_dir, cache)
    graph = onnx_model.graph_path(default_model_path(), str(cache))
    with open(graph, "r+b") as handle:  # a half-written file, as after a crash mid-copy
        handle.truncate(4096)
    enc = Encoder(default_model_path(), backend="onnx", onnx_dir=str(cache))
    vectors = enc.encode(texts[:4])
    assert enc.backend_in_use == "onnx"
    assert os.path.getsize(graph) > 1_000_000
    assert np.sum(vectors * torch_vectors[:4], axis=1).min() >= 0.999


def test_a_model_that_is_not_mean_pooled_falls_back_to_torch(tmp_path, caplog):
    model = tmp_path / "cls-model"
    shutil.copytree(default_model_path(), model)
    pooling = model / "1_Pooling" / "config.json"
    config = json.loads(pooling.read_text())
    config.update(pooling_mode_mean_tokens=False, pooling_mode_cls_token=True)
    pooling.write_text(json.dumps(config))
    enc = Encoder(str(model), backend="onnx", onnx_dir=str(tmp_path / "models"))
    with caplog.at_level(logging.WARNING, logger="embeddings.encoder"):
        vectors = enc.encode(["Toy Story (1995)", "Heat (1995)"])
    assert enc.backend_in_use == "torch"
    assert vectors.shape == (2, 384)
    assert any("onnx_unavailable" in r.getMessage() and "mean pooling" in r.getMessage() for r in caplog.records)
    assert not os.path.exists(tmp_path / "models") or not os.listdir(tmp_path / "models")


def test_an_export_that_does_not_reproduce_torch_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(onnx_model, "MIN_COSINE", 1.5)  # no export can pass: the check must refuse it
    cache = tmp_path / "models"
    with pytest.raises(onnx_model.UnsupportedModel, match="cosine"):
        onnx_model.load(default_model_path(), str(cache),
                        lambda: Encoder(default_model_path(), backend="torch").model)
    assert not [name for name in os.listdir(cache) if name.endswith(".onnx")]


def test_the_graph_name_follows_the_weights(tmp_path):
    model = tmp_path / "model"
    shutil.copytree(default_model_path(), model)
    before = onnx_model.graph_path(str(model), str(tmp_path))
    assert before == onnx_model.graph_path(str(model), str(tmp_path))
    with open(model / "config.json", "a", encoding="utf-8") as handle:
        handle.write("\n")
    assert onnx_model.graph_path(str(model), str(tmp_path)) != before


def test_cli_onnx_reports_the_cached_graph(encoder, monkeypatch, capsys):
    from embeddings.__main__ import main

    monkeypatch.setenv("EMBED_ONNX_DIR", encoder.onnx_dir)
    monkeypatch.setattr(onnx_model, "export", lambda *_a: pytest.fail("the graph is cached"))
    assert main(["onnx"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["graph"] == onnx_model.graph_path(default_model_path(), encoder.onnx_dir)
    assert out["bytes"] == os.path.getsize(out["graph"])


def test_cli_onnx_fails_with_one_line_for_a_missing_model(tmp_path, monkeypatch, capsys):
    from embeddings.__main__ import main

    monkeypatch.setenv("MODEL_PATH", str(tmp_path / "no-such-model"))
    monkeypatch.setenv("EMBED_ONNX_DIR", str(tmp_path / "models"))
    assert main(["onnx"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ONNX export failed:") and "\n" not in err
