"""all-MiniLM-L6-v2 as an ONNX Runtime graph: exported once from the installed model, then cached on disk.

Why: on these 2-core CPUs ONNX Runtime with BERT operator fusion encodes about 1.2x faster than the same
weights in torch, with vectors equal to torch's to cosine 0.99999 (docs/benchmarks.md). The embedding
job's throughput goal is measured against a bare torch `SentenceTransformer.encode`.

The graph holds the whole sentence-transformers pipeline of a mean-pooling, normalized model
(Transformer -> Pooling(mean) -> Normalize): token ids in, unit vectors out. Tokenization stays in Python
with the model's own tokenizer, truncated at the model's `max_seq_length`, as sentence-transformers does.

Nothing is downloaded: the export reads the local model directory. The file name carries a digest of the
weights, the config and the library versions, so a new model or a new torch never reuses a stale graph.
Every export is checked against torch on probe sentences before it is used.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from embeddings.fingerprint import model_fingerprint

log = logging.getLogger("embeddings.onnx")
EXPORT_FORMAT = 1  # bump when the exported graph changes shape or meaning
MIN_COSINE = 0.99  # an export must reproduce torch's vectors at least this closely
PROBES = [
    "Toy Story (1995). Adventure, Animation, Children, Comedy, Fantasy.",
    "A quiet drama about two sisters who inherit a vineyard in a dry year.",
    "x",
]


class UnsupportedModel(Exception):
    """The model directory is not a mean-pooling, normalized sentence-transformers model we can export."""


def _read_json(path: str) -> Any:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def check_layout(model_path: str) -> int:
    """Return the model's max_seq_length if its modules are Transformer -> mean Pooling -> Normalize."""
    try:
        modules = [m["type"].rsplit(".", 1)[-1] for m in _read_json(os.path.join(model_path, "modules.json"))]
        pooling = _read_json(os.path.join(model_path, "1_Pooling", "config.json"))
        max_len = int(_read_json(os.path.join(model_path, "sentence_bert_config.json"))["max_seq_length"])
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise UnsupportedModel(f"{model_path} lacks a readable sentence-transformers layout ({exc}).") from None
    if modules != ["Transformer", "Pooling", "Normalize"]:
        raise UnsupportedModel(f"modules {modules} are not Transformer -> Pooling -> Normalize.")
    modes = [k for k, v in pooling.items() if k.startswith("pooling_mode_") and v]
    if modes != ["pooling_mode_mean_tokens"]:
        raise UnsupportedModel(f"pooling {modes} is not mean pooling.")
    return max_len


def graph_path(model_path: str, cache_dir: str, fingerprint: str | None = None) -> str:
    """Where the exported graph of `model_path` lives: keyed by the model's fingerprint (weights, configs;
    `model_fingerprint`, computed here unless the caller has it) and the library versions."""
    import onnxruntime
    import torch
    import transformers

    fingerprint = fingerprint or model_fingerprint(model_path)
    digest = hashlib.sha256(f"{EXPORT_FORMAT}|{torch.__version__}|{transformers.__version__}|"
                            f"{onnxruntime.__version__}|{fingerprint}".encode())
    return os.path.join(cache_dir, f"{os.path.basename(os.path.normpath(model_path))}-{digest.hexdigest()[:16]}.onnx")


def export(model_path: str, out_path: str) -> None:
    """Export the model with mean pooling and normalization to `out_path` (atomic), fused for BERT."""
    import torch
    from transformers import AutoConfig, AutoModel

    config = AutoConfig.from_pretrained(model_path, local_files_only=True)
    model = AutoModel.from_pretrained(model_path, local_files_only=True).eval()
    model.set_attn_implementation("eager")  # the pattern ONNX Runtime's attention fusion recognizes

    class Pipeline(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    token_type_ids: torch.Tensor) -> torch.Tensor:
            hidden = self.inner(input_ids=input_ids, attention_mask=attention_mask,
                                token_type_ids=token_type_ids).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, p=2, dim=1)

    os.makedirs(os.path.dirname(out_path) or ".", exist_ok=True)
    sample = torch.ones(2, 8, dtype=torch.long)
    axes = {"batch": 0, "tokens": 1}
    with tempfile.TemporaryDirectory(dir=os.path.dirname(out_path) or ".") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes on traced shapes; the probe check below decides
        raw = os.path.join(tmp, "raw.onnx")
        with torch.no_grad():
            torch.onnx.export(
                Pipeline(model), (sample, sample, torch.zeros_like(sample)), raw,
                input_names=["input_ids", "attention_mask", "token_type_ids"], output_names=["embedding"],
                dynamic_axes={"input_ids": {v: k for k, v in axes.items()},
                              "attention_mask": {v: k for k, v in axes.items()},
                              "token_type_ids": {v: k for k, v in axes.items()},
                              "embedding": {0: "batch"}},
                opset_version=17, dynamo=False,
            )
        final = raw
        if config.model_type == "bert":
            from onnxruntime.transformers import optimizer

            logging.disable(logging.INFO)  # the optimizer logs every fusion it makes at INFO
            try:
                fused = optimizer.optimize_model(raw, model_type="bert", num_heads=config.num_attention_heads,
                                                 hidden_size=config.hidden_size, opt_level=1)
            finally:
                logging.disable(logging.NOTSET)
            final = os.path.join(tmp, "fused.onnx")
            fused.save_model_to_file(final)
        os.replace(final, out_path)


class OnnxSentenceEncoder:
    """Texts -> unit vectors through an ONNX Runtime session; batches are formed longest text first."""

    def __init__(self, model_path: str, graph: str, max_seq_length: int) -> None:
        import onnxruntime as ort
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(model_path, local_files_only=True)
        self.max_seq_length = max_seq_length
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        self.inputs = {i.name for i in self.session.get_inputs()}

    def encode(self, texts: Sequence[str], batch_size: int, progress: Any = None) -> np.ndarray:
        """Unit vectors of `texts` in their order; `progress` (a tqdm bar) is advanced per batch."""
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out: np.ndarray | None = None
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            batch = self.tokenizer([texts[i] for i in rows], padding=True, truncation=True,
                                   max_length=self.max_seq_length, return_tensors="np")
            feed = {name: batch[name].astype(np.int64) for name in self.inputs}
            vectors = self.session.run(None, feed)[0]
            if out is None:
                out = np.empty((len(texts), vectors.shape[1]), dtype=np.float32)
            out[rows] = vectors
            if progress is not None:
                progress.update(len(rows))
        assert out is not None, "encode needs at least one text"
        return out


def load(model_path: str, cache_dir: str, reference: Any, fingerprint: str | None = None) -> OnnxSentenceEncoder:
    """The ONNX encoder of `model_path`, exporting it into `cache_dir` when no graph is cached.

    `reference()` returns the torch SentenceTransformer; it is only called to check a fresh export. A
    cached graph ONNX Runtime cannot open (a truncated file) is exported again. Raises UnsupportedModel, or
    the export's own error, when ONNX cannot serve this model: the caller falls back to torch.
    """
    max_len = check_layout(model_path)
    path = graph_path(model_path, cache_dir, fingerprint)
    if os.path.exists(path):
        try:
            return OnnxSentenceEncoder(model_path, path, max_len)
        except Exception as exc:  # onnxruntime raises its own untyped errors on a damaged file
            log.warning({"event": "onnx_cache_unreadable", "graph": path, "error": str(exc)[:200]})
            os.remove(path)
    log.info({"event": "onnx_export", "model": model_path, "graph": path})
    export(model_path, path)
    encoder = OnnxSentenceEncoder(model_path, path, max_len)
    expected = reference().encode(PROBES, normalize_embeddings=True, convert_to_numpy=True)
    cosine = float(np.min(np.sum(encoder.encode(PROBES, 8) * expected, axis=1)))
    if cosine < MIN_COSINE:
        os.remove(path)
        raise UnsupportedModel(f"the ONNX export reproduces torch only to cosine {cosine:.4f}.")
    return encoder
