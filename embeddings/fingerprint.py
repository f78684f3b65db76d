"""The model's fingerprint: which model files made a vector, independent of where they are installed.

Its own module, below both encoders (embeddings/encoder.py, embeddings/onnx_model.py) and the job, so none
of them imports another for it. Reads files only; no model library is imported.
"""

from __future__ import annotations

import hashlib
import os

MODEL_FILES = (".json", ".safetensors", ".bin", ".txt")  # weights, configs, vocabulary: what decides a vector


def model_fingerprint(model_path: str) -> str:
    """`sha256:<16 hex>` over the files under `model_path` that decide the vectors (MODEL_FILES, with their
    relative paths, in a fixed order; README files and caches do not count): the same model gives the same
    fingerprint wherever it is installed, any other weights, pooling or vocabulary a different one. The job
    records it with the vectors so that two models' vectors are never mixed in one collection; the ONNX
    graph's cache name is derived from it."""
    if not os.path.isdir(model_path):
        raise FileNotFoundError(f"model directory {model_path} does not exist.")
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(model_path):
        dirs.sort()
        for name in sorted(files):
            if name.endswith(MODEL_FILES):
                full = os.path.join(root, name)
                digest.update(os.path.relpath(full, model_path).replace(os.sep, "/").encode())
                with open(full, "rb") as handle:
                    for chunk in iter(lambda: handle.read(1 << 20), b""):
                        digest.update(chunk)
    return f"sha256:{digest.hexdigest()[:16]}"
