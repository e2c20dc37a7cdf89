"""Text corpora as re-iterable streams of documents: the embedded Wikipedia sample, local files, HF datasets.

A corpus is opened from one spec: `wikipedia` (the wikitext sample inside the gensim wheel, markup
stripped), a local .txt/.jsonl/.parquet file or a folder of them, or `hf:<dataset>[:<config>][@<split>]` (a
Hugging Face dataset streamed; needs the `hf` extra: hf_corpus.py). Table rows (.jsonl lines, Parquet and HF
rows) take their text from `text_column`, else from the first of text / content / document. Iteration is
deterministic, so a second pass sees the same documents in the same order (the collector relies on that to
rebuild selected windows instead of storing them).

A corpus's name is its identity, stored with each collection, each record's provenance and the Ray shard
checkpoints: it names the dataset, config, split and an explicit text column, so two different corpora never
share a name (and a resumed collection never mixes them).
"""

from __future__ import annotations

import bz2
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from activations.corpus_rows import ID_KEYS, TEXT_KEYS, CorpusError, Document, batch_documents, id_column, text_column
from activations.hf_corpus import PREFIX as HF_PREFIX
from activations.hf_corpus import HfRows, parse_hf_spec

WIKIPEDIA = "wikipedia"
WIKI_FILE = "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
LOCAL_SUFFIXES = (".txt", ".jsonl", ".parquet")
_TABLE_SUFFIXES = (".jsonl", ".parquet")

@dataclass(frozen=True)
class Corpus:
    name: str
    _documents: Callable[[], Iterator[Document]]

    def documents(self) -> Iterator[Document]:
        """The documents in order; a corpus with none at all is an error, not an empty collection."""
        empty = True
        for doc in self._documents():
            empty = False
            yield doc
        if empty:
            raise CorpusError(f"corpus {self.name} holds no document with text (no rows, or every text empty)")


# --- Wikipedia -------------------------------------------------------------------------------------

_WIKI_CLEANUPS = [
    (re.compile(r"'{2,}"), ""),  # bold/italic quotes
    (re.compile(r"^=+\s*(.*?)\s*=+\s*$", re.M), r"\1"),  # headings keep their text, lose the equals signs
    (re.compile(r"^[*#:;]+\s*", re.M), ""),  # list and indent markers
    (re.compile(r"^(?:File|Image):[^|\n]*\|", re.M), ""),  # gallery lines: keep the caption only
    (re.compile(r"\|alt=.*$", re.M), ""),  # image alt text after a caption
    (re.compile(r"&nbsp;|&ndash;|&mdash;"), " "),
    (re.compile(r"\(\s*[,;]?\s*\)"), ""),  # parentheses left empty by removed templates
    (re.compile(r"\s+([,.;:])"), r"\1"),
    (re.compile(r"[ \t]{2,}"), " "),
    (re.compile(r"\n{3,}"), "\n\n"),
]


def strip_wikitext(text: str) -> str:
    """Wikitext -> prose: gensim's filter_wiki drops templates, refs, tables, links' targets and HTML;
    the rest removes emphasis quotes, heading marks, list markers and leftover punctuation debris."""
    from gensim.corpora.wikicorpus import filter_wiki

    text = filter_wiki(text)
    for pattern, repl in _WIKI_CLEANUPS:
        text = pattern.sub(repl, text)
    lines = [line.strip() for line in text.split("\n")]
    # Lines with no letters are table and template debris.
    return "\n".join(line for line in lines if not line or re.search(r"[A-Za-z]", line)).strip()


def _wikipedia_documents() -> Iterator[Document]:
    from gensim.corpora.wikicorpus import extract_pages
    from gensim.test.utils import datapath

    with bz2.BZ2File(datapath(WIKI_FILE)) as fh:
        for title, text, pageid in extract_pages(fh):
            if not text or text.lstrip().lower().startswith("#redirect"):
                continue
            prose = strip_wikitext(text)
            if prose:
                yield Document(id=f"{pageid}:{title}", text=prose)


# --- local files -----------------------------------------------------------------------------------

def _pick(row: dict, keys: tuple[str, ...]) -> object:
    return next((row[k] for k in keys if row.get(k) is not None), None)


def _jsonl_documents(path: Path, wanted: str | None) -> Iterator[Document]:
    keys = (wanted,) if wanted else TEXT_KEYS
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise CorpusError(f"{path}:{n}: not valid JSON ({exc.msg}); "
                                  "each line must be an object with a \"text\" field") from None
            text = _pick(row, keys) if isinstance(row, dict) else None
            if not isinstance(text, str):
                fields = f" (fields: {', '.join(row)})" if isinstance(row, dict) else ""
                raise CorpusError(f"{path}:{n}: no string field {' / '.join(keys)}{fields}; "
                                  "each line needs the document text (name its field with --text-column)")
            yield Document(id=f"{path.name}:{_pick(row, ID_KEYS) or n}", text=text)


def _parquet_columns(path: Path, wanted: str | None) -> tuple[str, str | None]:
    """The text and id columns of a Parquet file, read from its schema (checked when the corpus opens)."""
    import pyarrow.parquet as pq

    try:
        names = pq.read_schema(path).names
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid (a ValueError): not Parquet at all
        raise CorpusError(f"{path}: not a readable Parquet file ({exc})") from None
    text_col = text_column(names, wanted, str(path))
    return text_col, id_column(names, text_col)


def _parquet_documents(path: Path, wanted: str | None) -> Iterator[Document]:
    import pyarrow.parquet as pq

    text_col, id_col = _parquet_columns(path, wanted)
    batches = (b.to_pydict() for b in pq.ParquetFile(path).iter_batches(
        columns=[text_col] + ([id_col] if id_col else [])))
    yield from batch_documents(batches, text_col, id_col, str(path), id_prefix=f"{path.name}:")


def _file_documents(path: Path, wanted: str | None) -> Iterator[Document]:
    if path.suffix == ".txt":
        yield Document(id=path.name, text=path.read_text(encoding="utf-8"))
    elif path.suffix == ".jsonl":
        yield from _jsonl_documents(path, wanted)
    else:
        yield from _parquet_documents(path, wanted)


def _local_files(path: Path) -> list[Path]:
    if path.is_file():
        if path.suffix not in LOCAL_SUFFIXES:
            raise CorpusError(f"corpus file {path}: unsupported type {path.suffix!r}; use {', '.join(LOCAL_SUFFIXES)}")
        return [path]
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in LOCAL_SUFFIXES)
    if not files:
        raise CorpusError(f"corpus folder {path} holds no {', '.join(LOCAL_SUFFIXES)} files")
    return files


def _named(source: str, text_col: str | None) -> str:
    # An explicit column is part of the identity: two columns of one table are two corpora.
    return f"{source}#{text_col}" if text_col else source


def open_corpus(spec: str = WIKIPEDIA, text_column: str | None = None) -> Corpus:
    """Resolve a corpus spec (see module doc). Local files and HF datasets are checked now (paths, Parquet
    columns, dataset / config / split), not on first iteration, so a bad spec fails before a model loads.
    `text_column` names the column of table rows holding the text."""
    if spec == WIKIPEDIA:
        if text_column is not None:
            raise CorpusError("--text-column applies to .jsonl/.parquet files and hf: datasets, not 'wikipedia'")
        return Corpus(WIKIPEDIA, _wikipedia_documents)
    if spec.startswith(HF_PREFIX):
        rows = HfRows(parse_hf_spec(spec), text_column)
        return Corpus(_named(str(rows.spec), text_column), rows.documents)
    path = Path(spec).expanduser()
    if not path.exists():
        raise CorpusError(
            f"corpus {spec!r} is not '{WIKIPEDIA}', an existing file or folder, or hf:<dataset>[:<config>][@<split>]"
        )
    files = _local_files(path)
    for f in files:
        if f.suffix == ".parquet":
            _parquet_columns(f, text_column)
    if text_column is not None and not any(f.suffix in _TABLE_SUFFIXES for f in files):
        raise CorpusError(f"corpus {path}: --text-column applies to .jsonl/.parquet files; it holds only .txt files")
    return Corpus(_named(str(path), text_column),
                  lambda: (doc for f in files for doc in _file_documents(f, text_column)))
