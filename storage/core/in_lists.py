"""Statements over a caller's list of ids, a chunk at a time. Every backend caps the bound parameters of one
statement (PostgreSQL's protocol at 65535, SQLite at 32766 or more by build), and one layer of a wide SAE has
more features than that: an IN list of all of them fails outright."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice
from typing import TypeVar

T = TypeVar("T")

CHUNK = 5_000  # ids per IN list, and rows per executemany (under every backend's bound-parameter limit)


def chunks(items: Iterable[T], size: int = CHUNK) -> Iterator[list[T]]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk
