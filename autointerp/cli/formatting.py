"""Render lists of result dicts as a table, one JSON document, or CSV on stdout."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

FORMATS = ("table", "json", "csv")


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def emit(rows: list[dict[str, Any]], fmt: str, columns: Sequence[str], *, title: str | None = None) -> None:
    if fmt == "json":
        sys.stdout.write(json.dumps(rows, ensure_ascii=False) + "\n")
    elif fmt == "csv":
        writer = csv.DictWriter(sys.stdout, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    else:
        table = Table(title=title, show_lines=False)
        for column in columns:
            table.add_column(column, overflow="fold", max_width=70 if column == "explanation" else None)
        for row in rows:
            table.add_row(*(_cell(row.get(c)) for c in columns))
        Console(width=None if sys.stdout.isatty() else 200).print(table)
