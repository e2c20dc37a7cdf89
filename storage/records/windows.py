"""Context windows stored once: every record that uses a window (any feature, any layer, any collection of
the same model) points at one `windows` row, found by a hash of its provenance and tokens."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Hashable, Sequence
from typing import cast

from sqlalchemy import Table, insert, select
from sqlalchemy.orm import Session

from activations.records import ActivationRecord
from storage.core.activation_codec import encode_ids
from storage.core.schema import Window

_WINDOWS = cast(Table, Window.__table__)
_CHUNK = 5_000  # hashes per IN list and rows per executemany


def content_hash(corpus: str | None, document: str | None, offset: int | None, tokens: Sequence[str]) -> str:
    """The identity of a window within a subject model. Migrations compute it too: never change it."""
    text = json.dumps([corpus, document, offset, list(tokens)], ensure_ascii=False, separators=(",", ":"))
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def _key(record: ActivationRecord) -> Hashable:
    p = record.provenance
    return (p.corpus, p.document, p.offset, record.tokens)


def window_ids(session: Session, model_id: int, records: Sequence[ActivationRecord]) -> list[int]:
    """The window row id of each record, inserting the windows not stored yet (one row per distinct window)."""
    distinct: dict[Hashable, ActivationRecord] = {}
    for record in records:
        distinct.setdefault(_key(record), record)
    hashes = {key: content_hash(r.provenance.corpus, r.provenance.document, r.provenance.offset, r.tokens)
              for key, r in distinct.items()}
    ids = _ids_of(session, model_id, list(hashes.values()))
    missing = [(key, h) for key, h in hashes.items() if h not in ids]
    for start in range(0, len(missing), _CHUNK):
        rows = []
        for key, h in missing[start:start + _CHUNK]:
            r = distinct[key]
            rows.append({"model_id": model_id, "content_hash": h, "corpus": r.provenance.corpus,
                         "document": r.provenance.document, "offset": r.provenance.offset, "tokens": list(r.tokens),
                         "token_ids": encode_ids(r.token_ids) if r.token_ids is not None else None})
        session.execute(insert(_WINDOWS), rows)
    if missing:
        ids.update(_ids_of(session, model_id, [h for _, h in missing]))
    return [ids[hashes[_key(record)]] for record in records]


def _ids_of(session: Session, model_id: int, hashes: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for start in range(0, len(hashes), _CHUNK):
        chunk = hashes[start:start + _CHUNK]
        rows = session.execute(select(Window.content_hash, Window.id).where(
            Window.model_id == model_id, Window.content_hash.in_(chunk)))
        out.update({h: wid for h, wid in rows})
    return out
