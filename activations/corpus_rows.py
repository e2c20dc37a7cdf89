"""Documents from tables (a Parquet file, a Hugging Face dataset): which column holds the text, which the id,
and the rows turned into documents. Local Parquet files and HF datasets share this, so the same rows give the
same documents, hence the same windows, whichever reader delivered them."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from activations.errors import UserError

TEXT_KEYS = ("text", "content", "document")
ID_KEYS = ("id", "title", "doc_id", "url")


class CorpusError(UserError):
    """A corpus spec or file is unusable; the message names it and says what is expected."""


@dataclass(frozen=True)
class Document:
    id: str
    text: str


def text_column(columns: Sequence[str], wanted: str | None, where: str) -> str:
    """The column holding the document text: `wanted`, else the first of TEXT_KEYS the table has."""
    if wanted is not None:
        if wanted not in columns:
            raise CorpusError(f"{where}: no column {wanted!r} (columns: {', '.join(columns)}); "
                              "pass one of them as --text-column")
        return wanted
    found = next((k for k in TEXT_KEYS if k in columns), None)
    if found is None:
        raise CorpusError(f"{where}: no column named {' / '.join(TEXT_KEYS)} (columns: {', '.join(columns)}); "
                          "name the text column with --text-column")
    return found


def id_column(columns: Sequence[str], text_col: str) -> str | None:
    return next((k for k in ID_KEYS if k in columns and k != text_col), None)


def batch_documents(batches: Iterable[dict[str, list[Any]]], text_col: str, id_col: str | None, where: str,
                    id_prefix: str = "") -> Iterator[Document]:
    """Column batches (dict of equal-length lists) -> one document per row with text. A row's id is its id
    column's value, else its row number (rows without text are skipped but counted, so the numbers are the
    table's)."""
    row = 0
    for batch in batches:
        ids = batch[id_col] if id_col else None
        for i, text in enumerate(batch[text_col]):
            if text is not None and not isinstance(text, str):
                raise CorpusError(f"{where}: row {row}: column {text_col!r} holds {type(text).__name__}, not text; "
                                  "name a column of strings with --text-column")
            if text:
                key = ids[i] if ids is not None and ids[i] is not None else row
                yield Document(id=f"{id_prefix}{key}", text=text)
            row += 1
