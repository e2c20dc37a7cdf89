"""Text corpora as re-iterable streams of documents: the embedded Wikipedia sample, local files, HF datasets.

A corpus is opened from one spec: `wikipedia` (the wikitext sample inside the gensim wheel, markup
stripped), a local .txt/.jsonl/.parquet file or a folder of them, or `hf:<dataset id>` (needs the
`datasets` package and a network). Iteration is deterministic, so a second pass sees the same documents in
the same order (the collector relies on that to rebuild selected windows instead of storing them).
"""

from __future__ import annotations

import bz2
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from activations.errors import UserError

WIKIPEDIA = "wikipedia"
WIKI_FILE = "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
LOCAL_SUFFIXES = (".txt", ".jsonl", ".parquet")
_TEXT_KEYS = ("text", "content", "document")
_ID_KEYS = ("id", "title", "doc_id", "url")


class CorpusError(UserError):
    """A corpus spec or file is unusable; the message names it and says what is expected."""


@dataclass(frozen=True)
class Document:
    id: str
    text: str


@dataclass(frozen=True)
class Corpus:
    name: str
    _documents: Callable[[], Iterator[Document]]

    def documents(self) -> Iterator[Document]:
        return self._documents()


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


def _jsonl_documents(path: Path) -> Iterator[Document]:
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise CorpusError(f"{path}:{n}: not valid JSON ({exc.msg}); "
                                  "each line must be an object with a \"text\" field") from None
            text = _pick(row, _TEXT_KEYS) if isinstance(row, dict) else None
            if not isinstance(text, str):
                raise CorpusError(f"{path}:{n}: no string field {' / '.join(_TEXT_KEYS)}; "
                                  "each line needs the document text")
            yield Document(id=f"{path.name}:{_pick(row, _ID_KEYS) or n}", text=text)


def _parquet_documents(path: Path) -> Iterator[Document]:
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    names = pf.schema_arrow.names
    text_col = next((k for k in _TEXT_KEYS if k in names), None)
    if text_col is None:
        raise CorpusError(f"{path}: no column named {' / '.join(_TEXT_KEYS)} (columns: {names})")
    id_col = next((k for k in _ID_KEYS if k in names), None)
    row = 0
    for batch in pf.iter_batches(columns=[text_col] + ([id_col] if id_col else [])):
        data = batch.to_pydict()
        for i, text in enumerate(data[text_col]):
            if text:
                yield Document(id=f"{path.name}:{data[id_col][i] if id_col else row}", text=str(text))
            row += 1


def _file_documents(path: Path) -> Iterator[Document]:
    if path.suffix == ".txt":
        yield Document(id=path.name, text=path.read_text(encoding="utf-8"))
    elif path.suffix == ".jsonl":
        yield from _jsonl_documents(path)
    else:
        yield from _parquet_documents(path)


def _local_files(path: Path) -> list[Path]:
    if path.is_file():
        if path.suffix not in LOCAL_SUFFIXES:
            raise CorpusError(f"corpus file {path}: unsupported type {path.suffix!r}; use {', '.join(LOCAL_SUFFIXES)}")
        return [path]
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in LOCAL_SUFFIXES)
    if not files:
        raise CorpusError(f"corpus folder {path} holds no {', '.join(LOCAL_SUFFIXES)} files")
    return files


# --- HF datasets -----------------------------------------------------------------------------------

def _hf_documents(dataset_id: str) -> Iterator[Document]:
    try:
        import datasets
    except ImportError:
        raise CorpusError(
            f"corpus hf:{dataset_id} needs the `datasets` package (pip install datasets) and network access; "
            "or pass a local .txt/.jsonl/.parquet file or folder"
        ) from None
    stream = datasets.load_dataset(dataset_id, split="train", streaming=True)
    for n, row in enumerate(stream):
        text = _pick(row, _TEXT_KEYS)
        if isinstance(text, str) and text:
            yield Document(id=f"{dataset_id}:{_pick(row, _ID_KEYS) or n}", text=text)


def open_corpus(spec: str = WIKIPEDIA) -> Corpus:
    """Resolve a corpus spec (see module doc); local paths are checked now, not on first iteration."""
    if spec == WIKIPEDIA:
        return Corpus(WIKIPEDIA, _wikipedia_documents)
    if spec.startswith("hf:"):
        dataset_id = spec[3:]
        return Corpus(spec, lambda: _hf_documents(dataset_id))
    path = Path(spec).expanduser()
    if not path.exists():
        raise CorpusError(
            f"corpus {spec!r} is not '{WIKIPEDIA}', an existing file or folder, or hf:<dataset id>"
        )
    files = _local_files(path)
    return Corpus(str(path), lambda: (doc for f in files for doc in _file_documents(f)))
