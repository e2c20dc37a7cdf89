"""No function of the project's packages runs over MAX_LINES lines (docs/architecture.md): a longer one does
several jobs, and each is split out under a name that says what it does. Migrations are generated and exempt."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("activations", "llm_client", "explainer", "simulator", "scorer", "storage", "autointerp")
MAX_LINES = 60


def long_functions(path: Path, root: Path) -> list[str]:
    """`path:line name (n lines)` for each function or method of the file over MAX_LINES, the path relative to
    `root`; a function's lines run from its `def` to its last statement."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            n = (node.end_lineno or node.lineno) - node.lineno + 1
            if n > MAX_LINES:
                found.append(f"{path.relative_to(root)}:{node.lineno} {node.name} ({n} lines)")
    return found


def test_the_check_finds_a_function_one_line_over_and_passes_one_at_the_limit(tmp_path: Path) -> None:
    def body(indent: str) -> str:
        return "".join(f"{indent}x{i} = {i}\n" for i in range(MAX_LINES - 1))

    sample = tmp_path / "sample.py"
    sample.write_text(f"def at_limit():\n{body('    ')}\n\nclass C:\n    async def over(self):\n{body('        ')}"
                      "        return 1\n")
    assert long_functions(sample, tmp_path) == [f"sample.py:{MAX_LINES + 4} over ({MAX_LINES + 1} lines)"]


def test_no_function_is_over_the_limit() -> None:
    files = [p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py")) if "migrations" not in p.parts]
    assert files, "no source files found: is ROOT the repository root?"
    too_long = [f for p in files for f in long_functions(p, ROOT)]
    assert not too_long, (f"split these into functions with one job each, at most {MAX_LINES} lines:\n"
                          + "\n".join(too_long))
