"""Persistent response cache: a SQLite file keyed by sha256 of (backend, model, full request).

Only successful responses are stored, so a rerun pays only for what failed or is new. Lookups are a
primary-key read (well under a millisecond), cheap enough to run on the event loop.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path

from llm_client.base import Completion, TokenLogprobs, Usage


def request_key(backend: str, model: str, request: dict) -> str:
    blob = json.dumps({"backend": backend, "model": model, "request": request}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


def _encode(completion: Completion) -> str:
    data = dataclasses.asdict(completion)
    data.pop("cached")
    data.pop("attempts")
    return json.dumps(data)


def _decode(text: str) -> Completion:
    data = json.loads(text)

    def logprobs(rows: list[dict] | None) -> list[TokenLogprobs] | None:
        return None if rows is None else [TokenLogprobs(**r) for r in rows]

    return Completion(
        text=data["text"],
        # A hit made no request: its tokens are shown, its cost is truly zero.
        usage=Usage(data["usage"]["prompt_tokens"], data["usage"]["completion_tokens"], 0.0),
        prompt_logprobs=logprobs(data["prompt_logprobs"]),
        text_offsets=data["text_offsets"],
        generated_logprobs=logprobs(data["generated_logprobs"]),
        cached=True,
        attempts=0,
    )


class ResponseCache:
    def __init__(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, backend TEXT NOT NULL, "
            "model TEXT NOT NULL, response TEXT NOT NULL, created REAL NOT NULL)"
        )

    def get(self, key: str) -> Completion | None:
        with self._lock:
            row = self._db.execute("SELECT response FROM responses WHERE key = ?", (key,)).fetchone()
        return None if row is None else _decode(row[0])

    def put(self, key: str, backend: str, model: str, completion: Completion) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?)",
                (key, backend, model, _encode(completion), time.time()),
            )

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()
