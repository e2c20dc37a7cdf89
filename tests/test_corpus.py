"""Corpora: Wikipedia markup stripping, local file formats, and windows that never cross documents."""

from __future__ import annotations

import json
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from transformers import AutoTokenizer

from activations.corpus import CorpusError, open_corpus, strip_wikitext
from activations.windows import bos_prefix, iter_batches, iter_windows
from llm_client.local_models import resolve_model_path


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(resolve_model_path("smollm2-135m"))


def test_strip_wikitext_leaves_prose():
    raw = (
        "{{Infobox person|name=X}}'''Ada Lovelace''' was an [[England|English]] [[mathematician]].<ref>Cite</ref>\n"
        "== Early life ==\n* She was born in [[London]].\n{| class=\"wikitable\"\n|-\n| a || b\n|}\n"
        "[[File:Ada.jpg|thumb|Portrait]]<div>Text&nbsp;here</div>"
    )
    text = strip_wikitext(raw)
    assert "Ada Lovelace was an English mathematician." in text
    assert "Early life" in text and "She was born in London." in text
    assert not re.search(r"\[\[|\]\]|\{\{|\}\}|<ref|<div|'''|==|wikitable|&nbsp;", text)


def test_wikipedia_sample_is_clean_prose():
    docs = list(open_corpus("wikipedia").documents())
    assert len(docs) > 90 and docs[0].id == "12:Anarchism"
    text = "\n".join(d.text for d in docs)
    assert len(text) > 2_000_000
    for marker in ("[[", "]]", "{{", "}}", "<ref", "'''", "=="):
        assert marker not in text, marker


def test_local_files_and_folders(tmp_path):
    (tmp_path / "a.txt").write_text("first document")
    (tmp_path / "b.jsonl").write_text(json.dumps({"id": "x1", "text": "second"}) + "\n\n" + json.dumps({"text": "third"}) + "\n")
    pq.write_table(pa.table({"title": ["T"], "text": ["fourth"]}), tmp_path / "c.parquet")
    docs = list(open_corpus(str(tmp_path)).documents())
    assert [(d.id, d.text) for d in docs] == [
        ("a.txt", "first document"), ("b.jsonl:x1", "second"), ("b.jsonl:3", "third"), ("c.parquet:T", "fourth")
    ]
    assert [d.text for d in open_corpus(str(tmp_path / "b.jsonl")).documents()] == ["second", "third"]


def test_bad_corpus_specs_are_clear(tmp_path):
    with pytest.raises(CorpusError, match="not 'wikipedia', an existing file"):
        open_corpus(str(tmp_path / "missing"))
    (tmp_path / "bad.jsonl").write_text('{"body": "no text key"}\n')
    with pytest.raises(CorpusError, match=r"bad.jsonl:1: no string field text"):
        list(open_corpus(str(tmp_path / "bad.jsonl")).documents())
    (tmp_path / "x.csv").write_text("a,b")
    with pytest.raises(CorpusError, match="unsupported type '.csv'"):
        open_corpus(str(tmp_path / "x.csv"))


def test_windows_stay_inside_documents(tmp_path, tokenizer):
    long_doc = " ".join(f"alpha{i}" for i in range(60))
    (tmp_path / "docs.jsonl").write_text("\n".join(json.dumps({"id": n, "text": t}) for n, t in
                                                    [("long", long_doc), ("tiny", "hi"), ("mid", "one two three four five six seven eight nine ten")]))
    corpus = open_corpus(str(tmp_path / "docs.jsonl"))
    windows = list(iter_windows(corpus, tokenizer, ctx_len=16, min_tail=4))
    by_doc: dict[str, list] = {}
    for w in windows:
        by_doc.setdefault(w.document, []).append(w)
    assert "docs.jsonl:tiny" not in by_doc  # shorter than min_tail: dropped, never glued to a neighbour
    for doc_id, ws in by_doc.items():
        text = next(d.text for d in corpus.documents() if d.id == doc_id)
        ids = tokenizer(text, add_special_tokens=False).input_ids
        for w in ws:
            assert list(w.token_ids) == ids[w.offset:w.offset + len(w.token_ids)]
    assert [w.id for w in windows] == list(range(len(windows)))
    assert sum(len(w.token_ids) for w in iter_windows(corpus, tokenizer, 16, max_tokens=20, min_tail=4)) == 20
    batch = next(iter_batches(windows, 8, 16, bos_prefix(tokenizer), 0, "cpu"))
    assert batch.valid.sum().item() == batch.n_tokens == sum(len(w.token_ids) for w in windows[:8])
