"""VectorStore: one vector per movie in the ChromaDB collection "movies", used by the job and the service.

Embedded `PersistentClient` at CHROMA_PATH by default, `HttpClient` when CHROMA_HOST is set. Distances are
cosine (`configuration={"hnsw": {"space": "cosine"}}`, fixed at creation). Chroma never embeds anything
here: the collection has no embedding function and every write passes vectors.

The collection metadata carries `version`, a string stamped by the job whenever a build changed vectors;
readers poll `version` (one small metadata read) and drop their caches when it changes. `dirty` is set
while a build is writing, so a build that crashed gets its version stamped by the next run. `model` is the
fingerprint of the encoder whose vectors the collection holds (`embeddings.fingerprint.model_fingerprint`), so a
build with another model re-embeds everything instead of mixing two vector spaces.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

from embeddings.config import EmbeddingSettings

Neighbours = dict[str, list[tuple[str, float]]]
HNSW = {"space": "cosine", "ef_search": 200}
"""Every collection's index (fixed when the collection is created): cosine distance, and a wider search than
Chroma's default so the approximate neighbour lists are practically exact at catalog scale; construction keeps
Chroma's defaults, which cost the embedding job half the index time of a wider graph. The offline evaluation
builds its collections through the same store, so it scores what the service serves."""
_TIE_MARGIN = 4
_PAGE = 5000


def new_version() -> str:
    """A sortable, unique version string: UTC timestamp plus a short random suffix."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ") + "-" + uuid.uuid4().hex[:8]


def make_client(settings: EmbeddingSettings) -> Any:
    """HttpClient when CHROMA_HOST is set, else a PersistentClient at CHROMA_PATH (telemetry off)."""
    import chromadb
    from chromadb.config import Settings

    chroma_settings = Settings(anonymized_telemetry=False)
    if settings.chroma_host:
        return chromadb.HttpClient(
            host=settings.chroma_host, port=settings.chroma_port, settings=chroma_settings
        )
    return chromadb.PersistentClient(path=settings.chroma_path, settings=chroma_settings)


class VectorStore:
    """Movie vectors keyed by movie id, with batched nearest-neighbour lookups by stored vector."""

    def __init__(self, settings: EmbeddingSettings | None = None, client: Any = None) -> None:
        self.settings = settings or EmbeddingSettings.from_env()
        self._owns_client = client is None
        self._open(client)

    def _open(self, client: Any = None) -> None:
        self._client = client if client is not None else make_client(self.settings)
        self._collection = self._client.get_or_create_collection(
            self.settings.collection,
            configuration={"hnsw": HNSW},
            embedding_function=None,
        )
        self._max_batch = int(self._client.get_max_batch_size())
        self._seen_version = str(self._collection.metadata.get("version", "")) if self._collection.metadata else ""

    def reopen(self) -> None:
        """Drop in-memory index state and open the store again.

        Embedded Chroma is not coherent across processes: a reader process keeps the HNSW index it loaded
        and fails or answers stale after another process (the job) wrote. A reader that sees a new
        `version` calls `reopen()` before querying again. Over HTTP this just refreshes the handle.
        """
        if self._owns_client and not self.settings.chroma_host:
            self.close()
            self._open()
        else:
            self._open(self._client)

    def close(self) -> None:
        """Release the embedded client (its SQLite files and index); the store is unusable afterwards."""
        close = getattr(self._client, "close", None)
        if self._owns_client and close is not None:
            close()

    # --- writes ---------------------------------------------------------------------------------

    def upsert(self, ids: Sequence[str], vectors: np.ndarray | Sequence[Sequence[float]],
               metadatas: Sequence[Mapping[str, Any]] | None = None) -> None:
        """Insert or replace the vectors (and metadata) of `ids`, in as few calls as Chroma allows."""
        if len(ids) == 0:
            return
        array = np.asarray(vectors, dtype=np.float32)
        if array.ndim != 2 or array.shape[0] != len(ids):
            raise ValueError(f"expected {len(ids)} vectors, got an array of shape {array.shape}.")
        for start in range(0, len(ids), self._max_batch):
            end = start + self._max_batch
            self._collection.upsert(
                ids=list(ids[start:end]),
                embeddings=array[start:end],
                metadatas=[dict(m) for m in metadatas[start:end]] if metadatas is not None else None,
            )

    def delete(self, ids: Sequence[str]) -> None:
        """Remove the vectors of `ids`; unknown ids are ignored."""
        ids = list(ids)
        for start in range(0, len(ids), self._max_batch):
            self._collection.delete(ids=ids[start:start + self._max_batch])

    # --- reads ----------------------------------------------------------------------------------

    def get(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        """Stored vectors of the known `ids` (unknown ids are absent from the answer)."""
        out: dict[str, np.ndarray] = {}
        ids = list(dict.fromkeys(ids))
        for start in range(0, len(ids), self._max_batch):
            got = self._collection.get(ids=ids[start:start + self._max_batch], include=["embeddings"])
            for movie_id, vector in zip(got["ids"], got["embeddings"], strict=True):
                out[movie_id] = np.asarray(vector, dtype=np.float32)
        return out

    def neighbours(self, movie_ids: Sequence[str], k: int) -> Neighbours:
        """The `k` most similar movies to each known movie, most similar first, the movie itself excluded.

        One `get` for the stored vectors and one `query` for all of them; similarity = 1 - cosine distance.
        Movies without a vector are absent from the answer.
        """
        vectors = self.get(movie_ids)
        if not vectors or k <= 0:
            return {}
        known = list(vectors)
        # A few more than k (Chroma returns fewer when the collection is smaller), so that movies tied at
        # the cut are ordered by id rather than by the index's internal order: the same store always
        # gives the same lists.
        found = self._collection.query(
            query_embeddings=np.stack([vectors[m] for m in known]),
            n_results=k + 1 + _TIE_MARGIN,
            include=["distances"],
        )
        out: Neighbours = {}
        for movie_id, ids, distances in zip(known, found["ids"], found["distances"], strict=True):
            pairs = sorted(((other, 1.0 - float(d)) for other, d in zip(ids, distances, strict=True)
                            if other != movie_id), key=lambda p: (-round(p[1], 6), p[0]))
            out[movie_id] = pairs[:k]
        return out

    def count(self) -> int:
        """Number of vectors in the collection."""
        return int(self._collection.count())

    def ids(self) -> set[str]:
        """Every movie id that has a vector, read page by page."""
        out: set[str] = set()
        offset = 0
        while True:
            page = self._collection.get(include=[], limit=_PAGE, offset=offset)["ids"]
            out.update(page)
            if len(page) < _PAGE:
                return out
            offset += _PAGE

    # --- version --------------------------------------------------------------------------------

    def _metadata(self) -> dict[str, Any]:
        """Fresh collection metadata (another process may have stamped it)."""
        collection = self._client.get_collection(self.settings.collection, embedding_function=None)
        return dict(collection.metadata or {})

    @property
    def version(self) -> str:
        """The version the last build stamped; '' for a collection no build has finished yet.

        Embedded, a version stamped by another process since this store was opened makes it `reopen()`
        first, so a reader that polls `version` (as the service does) then queries the new vectors.
        """
        version = str(self._metadata().get("version", ""))
        if version != self._seen_version:
            if not self.settings.chroma_host:
                self.reopen()
            self._seen_version = version
        return version

    @property
    def dirty(self) -> bool:
        """True while (or after a crash of) a build that changed vectors and has not stamped yet."""
        return bool(self._metadata().get("dirty", False))

    @property
    def model(self) -> str:
        """The fingerprint of the model that made the vectors; '' when no build has recorded one."""
        return str(self._metadata().get("model", ""))

    def record_model(self, fingerprint: str) -> None:
        """Record that the vectors are (about to be) those of the model `fingerprint`."""
        self._collection.modify(metadata={**self._metadata(), "model": fingerprint})

    def mark_dirty(self) -> None:
        """Record that a build is about to change vectors (keeps the current version)."""
        self._collection.modify(metadata={**self._metadata(), "dirty": True})

    def stamp_version(self, version: str | None = None) -> str:
        """Set a new version (default `new_version()`), clear `dirty`, and return the version."""
        version = version or new_version()
        self._collection.modify(metadata={**self._metadata(), "version": version, "dirty": False})
        self._seen_version = version
        return version
