"""Persistent response cache: a SQLite file keyed by sha256 of (backend, model, full request).

Only successful responses are stored, so a rerun pays only for what failed or is new. Lookups are a
primary-key read (well under a millisecond), cheap enough to run on the event loop; several keys are read
in one query. Writes leave the caller at once: a response is encoded (a compact JSON of what the caller
keeps, built field by field, never through `dataclasses.asdict`'s deep copies) and queued, and a writer
thread commits the queue in batches. Queued responses are served from memory until committed; `close()`
(and interpreter exit) commits what is queued.
"""

from __future__ import annotations

import atexit
import base64
import hashlib
import json
import logging
import sqlite3
import sys
import threading
import time
import weakref
from array import array
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import msgspec

from llm_client.base import Completion, TokenLogprobs, Usage
from llm_client.top_rows import decode_rows

log = logging.getLogger(__name__)
FORMAT = 2  # compact rows (_rows_out); rows written by earlier versions (dataclasses.asdict) still read
TEXT_FORMAT = 3  # rows whose top alternatives arrived as JSON text (Completion.tops_json): that text as is


def request_key(backend: str, model: str, request: dict) -> str:
    blob = json.dumps({"backend": backend, "model": model, "request": request}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


def _rows_out(rows: list[TokenLogprobs] | None) -> list | None:
    """[tokens, logprobs, the keys of each row's top dict, all top values]: the values (most of the numbers)
    as packed little-endian doubles in base64, exact and far cheaper to write and read than float text."""
    if rows is None:
        return None
    keys: list[list[str]] = []
    values: list = []
    for r in rows:
        keys.append(list(r.top))
        values.extend(r.top.values())
    packed: str | list
    try:
        doubles = array("d", values)
    except TypeError:  # a null (or stranger) alternative: keep the values as JSON
        packed = values
    else:
        if sys.byteorder == "big":
            doubles.byteswap()
        packed = base64.b64encode(doubles.tobytes()).decode("ascii")
    return [[r.token for r in rows], [r.logprob for r in rows], keys, packed]


def _rows_in(data: list | None) -> list[TokenLogprobs] | None:
    if data is None:
        return None
    tokens, logprobs, keys, packed = data
    values: list
    if isinstance(packed, str):
        doubles = array("d")
        doubles.frombytes(base64.b64decode(packed))
        if sys.byteorder == "big":
            doubles.byteswap()
        values = doubles.tolist()
    else:
        values = packed
    rows, at = [], 0
    for token, logprob, names in zip(tokens, logprobs, keys):
        rows.append(TokenLogprobs(token, logprob, dict(zip(names, values[at:at + len(names)]))))
        at += len(names)
    return rows


def _text_rows_out(completion: Completion, tops_json: bytes) -> dict:
    prompt, generated = completion.prompt_logprobs or [], completion.generated_logprobs or []
    return {"prompt_rows": None if completion.prompt_logprobs is None else len(prompt),
            "generated_rows": None if completion.generated_logprobs is None else len(generated),
            "tokens": [r.token for r in prompt] + [r.token for r in generated],
            "logprobs": [r.logprob for r in prompt] + [r.logprob for r in generated],
            "tops": msgspec.Raw(tops_json)}


def _text_rows_in(entry: _Entry) -> tuple[list[TokenLogprobs] | None, list[TokenLogprobs] | None]:
    rows = [TokenLogprobs(t, p, top) for t, p, top in zip(entry.tokens, entry.logprobs, decode_rows(bytes(entry.tops)))]
    prompt = None if entry.prompt_rows is None else rows[:entry.prompt_rows]
    generated = None if entry.generated_rows is None else rows[len(rows) - entry.generated_rows:]
    return prompt, generated


class _Entry(msgspec.Struct):
    """Any format's fields; TEXT_FORMAT's top alternatives stay text until its rows are built."""

    v: int | None = None
    text: Any = None
    usage: Any = None
    offsets: Any = None
    prompt: Any = None  # FORMAT
    generated: Any = None
    prompt_rows: Any = None  # TEXT_FORMAT
    generated_rows: Any = None
    tokens: Any = None
    logprobs: Any = None
    tops: msgspec.Raw = msgspec.Raw()  # (msgspec takes no Raw in a union with None)
    prompt_logprobs: Any = None  # before FORMAT
    text_offsets: Any = None
    generated_logprobs: Any = None


_ENTRY = msgspec.json.Decoder(_Entry)


def encode(completion: Completion) -> str:
    u = completion.usage
    if completion.tops_json is not None:
        return msgspec.json.encode({
            "v": TEXT_FORMAT, "text": completion.text, "usage": [u.prompt_tokens, u.completion_tokens],
            "offsets": completion.text_offsets, **_text_rows_out(completion, completion.tops_json)}).decode()
    return msgspec.json.encode({
        "v": FORMAT, "text": completion.text, "usage": [u.prompt_tokens, u.completion_tokens],
        "prompt": _rows_out(completion.prompt_logprobs), "offsets": completion.text_offsets,
        "generated": _rows_out(completion.generated_logprobs)}).decode()


def decode(text: str) -> Completion:
    entry = _ENTRY.decode(text)
    if entry.v == TEXT_FORMAT:
        prompt, generated = _text_rows_in(entry)
        return Completion(text=entry.text, usage=Usage(entry.usage[0], entry.usage[1], 0.0), prompt_logprobs=prompt,
                          text_offsets=entry.offsets, generated_logprobs=generated, cached=True, attempts=0,
                          tops_json=bytes(entry.tops))
    if entry.v == FORMAT:
        return Completion(
            text=entry.text,
            # A hit made no request: its tokens are shown, its cost is truly zero.
            usage=Usage(entry.usage[0], entry.usage[1], 0.0),
            prompt_logprobs=_rows_in(entry.prompt), text_offsets=entry.offsets,
            generated_logprobs=_rows_in(entry.generated), cached=True, attempts=0,
        )

    def logprobs(rows: list[dict] | None) -> list[TokenLogprobs] | None:
        return None if rows is None else [TokenLogprobs(**r) for r in rows]

    return Completion(
        text=entry.text,
        usage=Usage(entry.usage["prompt_tokens"], entry.usage["completion_tokens"], 0.0),
        prompt_logprobs=logprobs(entry.prompt_logprobs),
        text_offsets=entry.text_offsets,
        generated_logprobs=logprobs(entry.generated_logprobs),
        cached=True,
        attempts=0,
    )


_open_caches: weakref.WeakSet[ResponseCache] = weakref.WeakSet()


@atexit.register
def _flush_all() -> None:
    for cache in list(_open_caches):
        cache.close()


class ResponseCache:
    def __init__(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()  # the reader connection and the queue
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, backend TEXT NOT NULL, "
            "model TEXT NOT NULL, response TEXT NOT NULL, created REAL NOT NULL)"
        )
        self._queued: dict[str, tuple[str, str, str, float]] = {}  # key -> (backend, model, encoded, created)
        self._wake = threading.Condition(self._lock)
        self._writing = 0  # entries taken off the queue and not yet committed
        self._closed = False
        self._writer = threading.Thread(target=self._write_loop, name=f"llm-cache-writer:{path.name}", daemon=True)
        self._writer.start()
        _open_caches.add(self)

    # --- reads -----------------------------------------------------------------------------------------
    def get(self, key: str) -> Completion | None:
        return self.get_many([key]).get(key)

    def get_many(self, keys: Sequence[str]) -> dict[str, Completion]:
        """The cached responses among `keys` (queued ones included), by key."""
        found: dict[str, str] = {}
        with self._lock:
            for key in keys:
                if key in self._queued:
                    found[key] = self._queued[key][2]
            rest = [k for k in dict.fromkeys(keys) if k not in found]
            for i in range(0, len(rest), 500):  # under SQLite's bound-parameter limit
                chunk = rest[i:i + 500]
                marks = ",".join("?" * len(chunk))
                found.update(self._db.execute(f"SELECT key, response FROM responses WHERE key IN ({marks})", chunk))
        return {key: decode(text) for key, text in found.items()}

    # --- writes ----------------------------------------------------------------------------------------
    def put(self, key: str, backend: str, model: str, completion: Completion) -> None:
        self.put_many([(key, completion)], backend, model)

    def put_many(self, items: Iterable[tuple[str, Completion]], backend: str, model: str) -> None:
        """Queue responses for the writer thread; they are served by get() from now on."""
        now = time.time()
        encoded = [(key, (backend, model, encode(c), now)) for key, c in items]
        with self._wake:
            if self._closed:
                raise RuntimeError("the response cache is closed")
            self._queued.update(encoded)
            self._wake.notify()

    def _write_loop(self) -> None:
        db = sqlite3.connect(str(self.path), isolation_level=None, timeout=30)
        db.execute("PRAGMA synchronous=NORMAL")
        try:
            while True:
                with self._wake:
                    while not self._queued and not self._closed:
                        self._wake.wait()
                    if not self._queued:  # closed and drained
                        return
                    batch = list(self._queued.items())
                    self._writing = len(batch)
                try:
                    with db:  # one transaction per batch
                        db.execute("BEGIN")
                        db.executemany("INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?)",
                                       [(key, b, m, text, t) for key, (b, m, text, t) in batch])
                except sqlite3.Error as exc:  # a cache that cannot write costs reruns, never this run
                    log.warning("response cache %s: could not store %d response(s): %s", self.path, len(batch), exc)
                with self._wake:
                    for key, entry in batch:
                        if self._queued.get(key) is entry:  # not replaced meanwhile
                            del self._queued[key]
                    self._writing = 0
                    self._wake.notify_all()
        finally:
            db.close()

    def flush(self) -> None:
        """Wait until everything queued so far is committed."""
        with self._wake:
            while (self._queued or self._writing) and self._writer.is_alive():
                self._wake.notify_all()
                self._wake.wait(timeout=1.0)

    def __len__(self) -> int:
        self.flush()
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def close(self) -> None:
        with self._wake:
            if self._closed:
                return
            self._closed = True
            self._wake.notify_all()
        self._writer.join()
        with self._lock:
            self._db.close()
        _open_caches.discard(self)
