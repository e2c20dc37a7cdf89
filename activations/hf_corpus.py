"""Corpora from Hugging Face datasets, streamed: `hf:<dataset>[:<config>][@<split>]`.

`<dataset>` is whatever `datasets.load_dataset` takes as its path: a Hub id (read over the network, row group by
row group, never downloaded whole) or a local dataset folder (Parquet, JSON, CSV or text files, laid out as on
the Hub). The split defaults to `train`. The rows become documents through the same table code as local Parquet
files (corpus_rows), so the windows that follow are the ones any other corpus of the same texts gives.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from activations.corpus_rows import CorpusError, Document, batch_documents, id_column, text_column

PREFIX = "hf:"
DEFAULT_SPLIT = "train"
_BATCH_ROWS = 256
_SYNTAX = "hf:<dataset id>[:<config>][@<split>], e.g. hf:Salesforce/wikitext:wikitext-2-raw-v1@validation"


@dataclass(frozen=True)
class HfSpec:
    dataset: str
    config: str | None = None
    split: str = DEFAULT_SPLIT

    def __str__(self) -> str:
        return f"{PREFIX}{self.dataset}{':' + self.config if self.config else ''}@{self.split}"


def parse_hf_spec(spec: str) -> HfSpec:
    """`hf:<dataset>[:<config>][@<split>]` -> its parts; anything else is a CorpusError that shows the syntax."""
    rest = spec[len(PREFIX):] if spec.startswith(PREFIX) else spec
    rest, at, split = rest.rpartition("@") if "@" in rest else (rest, "", DEFAULT_SPLIT)
    dataset, colon, config = rest.partition(":")
    for part, value in (("dataset id", dataset), ("config", config if colon else "-"), ("split", split if at else "-")):
        if not value or re.search(r"\s", value):
            raise CorpusError(f"corpus spec {spec!r}: {'no' if not value else 'whitespace in the'} {part}; "
                              f"expected {_SYNTAX}")
    return HfSpec(dataset, config or None, split)


def _load(spec: HfSpec) -> Any:
    try:
        import datasets
    except ImportError:
        raise CorpusError(f"corpus {spec} needs the Hugging Face `datasets` package: pip install autointerp[hf] "
                          "(or pass a local .txt/.jsonl/.parquet file or folder)") from None
    try:
        return datasets.load_dataset(spec.dataset, spec.config, split=spec.split, streaming=True)
    except (ValueError, OSError) as exc:  # unknown dataset, config or split; no network; unreadable files
        raise CorpusError(f"corpus {spec}: {' '.join(str(exc).split())}") from None


class HfRows:
    """One split of a dataset, opened once (so a bad id, config or split fails before any model loads) and
    streamed from its first row on every pass."""

    def __init__(self, spec: HfSpec, wanted_column: str | None) -> None:
        self.spec, self.wanted = spec, wanted_column
        self.stream = _load(spec)
        self.columns: list[str] | None = self.stream.column_names  # None when the dataset declares no features
        if self.columns is not None:
            text_column(self.columns, wanted_column, f"corpus {spec}")

    def documents(self) -> Iterator[Document]:
        columns = self.columns
        if columns is None:  # undeclared: read them off the first row
            columns = list(next(self._guarded(self.stream.take(1).iter(batch_size=1)), {}))
            if not columns:
                return  # no rows: the corpus reports it empty
        text_col = text_column(columns, self.wanted, f"corpus {self.spec}")
        id_col = id_column(columns, text_col)
        stream = self.stream.select_columns([text_col] + ([id_col] if id_col else []))
        yield from batch_documents(self._guarded(stream.iter(batch_size=_BATCH_ROWS)), text_col, id_col,
                                   f"corpus {self.spec}")

    def _guarded(self, batches: Iterator[dict[str, list[Any]]]) -> Iterator[dict[str, list[Any]]]:
        """The batches, with a failed read (network, a corrupt file) reported as this corpus's error."""
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                return
            except (ValueError, OSError) as exc:
                reason = " ".join(str(exc).split())
                raise CorpusError(f"corpus {self.spec}: reading its rows failed: {reason}") from None
            yield batch
