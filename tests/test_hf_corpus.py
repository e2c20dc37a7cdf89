"""Corpora from tables: Hugging Face datasets streamed through `datasets` (a local dataset folder here, so nothing
downloads) and local Parquet files give the windows a folder of .txt files of the same texts gives; their names
tell datasets, configs, splits and columns apart; bad specs and tables fail with one clear message."""

from __future__ import annotations

import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from transformers import AutoTokenizer

from activations.corpus import CorpusError, open_corpus
from activations.hf_corpus import HfSpec, parse_hf_spec
from activations.windows import iter_windows
from llm_client.local_models import resolve_model_path

TEXTS = [
    " ".join(f"alpha{i}" for i in range(70)),  # several windows, and a tail
    "hi",  # shorter than min_tail: no window
    "The quick brown fox jumps over the lazy dog, twice, and then once more for luck.",
    "",  # no text: skipped, still counted as a row
    "Tokens of a fourth document, long enough for one window of sixteen tokens and a bit more.",
]
IDS = [f"d{i}" for i in range(len(TEXTS))]

README = """---
configs:
- config_name: en
  data_files:
  - split: train
    path: en/train.parquet
  - split: validation
    path: en/validation.parquet
- config_name: fr
  data_files:
  - split: train
    path: fr/train.parquet
---
"""


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(resolve_model_path("smollm2-135m"))


def _parquet(path: Path, **columns: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), path)
    return path


def _dataset_folder(root: Path) -> Path:
    """A dataset laid out as on the Hub: two configs, `en` with train and validation splits."""
    _parquet(root / "en/train.parquet", id=IDS, text=TEXTS, title=[f"title {i}" for i in IDS])
    _parquet(root / "en/validation.parquet", id=["v0"], text=["validation text " * 8], title=["v"])
    _parquet(root / "fr/train.parquet", id=["f0"], text=["le renard brun saute " * 5], title=["f"])
    (root / "README.md").write_text(README)
    return root


def _windows(corpus_spec: str, tokenizer, text_column: str | None = None) -> list[tuple[int, int, tuple[int, ...]]]:
    windows = iter_windows(open_corpus(corpus_spec, text_column), tokenizer, ctx_len=16, min_tail=4)
    return [(w.id, w.offset, w.token_ids) for w in windows]


def test_parquet_and_hf_windows_equal_those_of_the_same_texts_as_txt_files(tmp_path, tokenizer):
    txt = tmp_path / "txt"
    txt.mkdir()
    for i, text in enumerate(TEXTS):
        if text:  # a .txt file is one document; an empty row is no document either
            (txt / f"doc-{i}.txt").write_text(text)
    parquet = _parquet(tmp_path / "corpus.parquet", id=IDS, text=TEXTS)
    dataset = _parquet(tmp_path / "ds" / "data" / "train.parquet", id=IDS, text=TEXTS).parent.parent
    expected = _windows(str(txt), tokenizer)
    assert len(expected) > 6
    assert _windows(str(parquet), tokenizer) == expected
    assert _windows(f"hf:{dataset}", tokenizer) == expected
    # Row ids come from the id column (prefixed by the file's name for local files, which a folder may mix).
    hf_docs = list(open_corpus(f"hf:{dataset}").documents())
    assert [d.id for d in hf_docs] == ["d0", "d1", "d2", "d4"]
    assert [d.id for d in open_corpus(str(parquet)).documents()][:2] == ["corpus.parquet:d0", "corpus.parquet:d1"]


def test_configs_splits_and_text_columns_are_read_and_named_apart(tmp_path, tokenizer):
    root = _dataset_folder(tmp_path / "ds")
    corpora = [open_corpus(spec, column) for spec, column in [
        (f"hf:{root}:en", None), (f"hf:{root}:en@validation", None), (f"hf:{root}:fr@train", None),
        (f"hf:{root}:en", "title")]]
    assert [c.name for c in corpora] == [
        f"hf:{root}:en@train", f"hf:{root}:en@validation", f"hf:{root}:fr@train", f"hf:{root}:en@train#title"]
    assert [next(c.documents()).text for c in corpora] == [
        TEXTS[0], "validation text " * 8, "le renard brun saute " * 5, "title d0"]
    assert open_corpus(f"hf:{root}:en@train").name == corpora[0].name  # train is the default split
    parquet = root / "en/train.parquet"
    assert open_corpus(str(parquet), "title").name == f"{parquet}#title" != open_corpus(str(parquet)).name


@pytest.mark.parametrize("spec, message", [
    ("hf:", "no dataset id"),
    ("hf:user/data@", "no split"),
    ("hf:user/data:@train", "no config"),
    ("hf:user/my data", "whitespace in the dataset id"),
])
def test_bad_hf_specs_show_the_syntax(spec, message):
    with pytest.raises(CorpusError, match=rf"corpus spec '{spec}': {message}; expected hf:<dataset id>\[:<config>\]"):
        open_corpus(spec)


def test_hf_spec_parts():
    assert parse_hf_spec("hf:roneneldan/TinyStories") == HfSpec("roneneldan/TinyStories", None, "train")
    assert parse_hf_spec("hf:Salesforce/wikitext:wikitext-2-raw-v1@validation") == HfSpec(
        "Salesforce/wikitext", "wikitext-2-raw-v1", "validation")
    assert str(parse_hf_spec("hf:a/b:c")) == "hf:a/b:c@train"


def test_unknown_split_or_config_names_the_ones_there_are(tmp_path):
    root = _dataset_folder(tmp_path / "ds")
    with pytest.raises(CorpusError, match=rf"corpus hf:{root}:en@test: Bad split: test. Available splits: "
                                          r"\['train', 'validation'\]"):
        open_corpus(f"hf:{root}:en@test")
    with pytest.raises(CorpusError, match=r"BuilderConfig 'de' not found. Available: \['en', 'fr'\]"):
        open_corpus(f"hf:{root}:de")
    with pytest.raises(CorpusError, match=r"Config name is missing.*\['en', 'fr'\]"):
        open_corpus(f"hf:{root}")


def test_a_missing_text_column_names_the_columns(tmp_path):
    body = _parquet(tmp_path / "ds/data/train.parquet", body=["some text"], n=[1])
    dataset = body.parent.parent
    for spec in (f"hf:{dataset}", str(body)):
        with pytest.raises(CorpusError, match=r"no column named text / content / document \(columns: body, n\); "
                                              "name the text column with --text-column"):
            open_corpus(spec)
        with pytest.raises(CorpusError, match=r"no column 'txt' \(columns: body, n\)"):
            open_corpus(spec, "txt")
        assert [d.text for d in open_corpus(spec, "body").documents()] == ["some text"]
        with pytest.raises(CorpusError, match=r"row 0: column 'n' holds int, not text"):
            list(open_corpus(spec, "n").documents())


def test_an_empty_dataset_is_an_error_not_an_empty_collection(tmp_path):
    blank = _parquet(tmp_path / "ds/data/train.parquet", text=["", None])
    with pytest.raises(CorpusError, match=rf"corpus hf:{blank.parent.parent}@train holds no document with text"):
        list(open_corpus(f"hf:{blank.parent.parent}").documents())
    no_rows = _parquet(tmp_path / "empty.parquet", text=pa.array([], pa.string()))
    with pytest.raises(CorpusError, match=rf"corpus {no_rows} holds no document with text"):
        list(open_corpus(str(no_rows)).documents())


def test_text_column_where_there_are_no_tables(tmp_path):
    (tmp_path / "a.txt").write_text("plain text")
    with pytest.raises(CorpusError, match="--text-column applies to .jsonl/.parquet files"):
        open_corpus(str(tmp_path), "body")
    with pytest.raises(CorpusError, match="not 'wikipedia'"):
        open_corpus("wikipedia", "body")


def test_without_datasets_installed_one_error_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "datasets", None)  # what `import datasets` meets when it is not installed
    with pytest.raises(CorpusError, match=r"corpus hf:user/data@train needs the Hugging Face `datasets` package: "
                                          r"pip install autointerp\[hf\]"):
        open_corpus("hf:user/data")
