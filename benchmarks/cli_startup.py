"""Start-up time of the common CLI commands: lazy imports (today) vs eager (every heavy library first).

Each command runs in a fresh Python process, the two ways alternating so both see the same machine load:

- lazy: `autointerp ARGS` as shipped: the command's module and what it imports at the top, nothing more.
- eager: the same `main(ARGS)` in a process that first imports what the CLI imported at start-up before it went
  lazy (torch, scipy, faiss, pyarrow, FastAPI and the autointerp modules built on them): the old cost.

Commands: `--help`, `query --help`, `query` and `runs` on an empty SQLite database (created and migrated
before timing, so no run pays for the migration). Figures are medians of --repeat runs each, in seconds from
process start to exit: `<command>_s_<way>` wall time, `<command>_cpu_s_<way>` the process's CPU time (user +
system), which a busy machine inflates much less.

    .venv/bin/python benchmarks/cli_startup.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# What `import autointerp.cli` pulled in before the commands were loaded lazily.
EAGER_IMPORTS = ("torch", "scipy.stats", "faiss", "pyarrow", "fastapi", "autointerp.api.app",
                 "activations.collect_config", "autointerp.workflows.collect_run", "autointerp.cli.comparisons",
                 "storage.search.embedding_index", "autointerp.export_writers")
RUN_MAIN = "import sys; from autointerp.cli import main; main(sys.argv[1:], prog_name='autointerp')"


def _command(way: str, args: list[str]) -> list[str]:
    prelude = f"import {', '.join(EAGER_IMPORTS)}; " if way == "eager" else ""
    return [sys.executable, "-c", prelude + RUN_MAIN, *args]


def _seconds(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system) of one run: on a shared machine the wall time grows with
    the load, the CPU time much less."""
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv[3:])} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    return elapsed, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5, help="runs of each command each way (median reported)")
    repeat = parser.parse_args().repeat
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        db = str(Path(tmp) / "empty.db")
        _seconds(_command("lazy", ["query", "--db", db]), env)  # creates and migrates the database
        cases = {"help": ["--help"], "query_help": ["query", "--help"], "query": ["query", "--db", db],
                 "runs": ["runs", "--db", db]}
        figures: dict[str, float] = {}
        for name, args in cases.items():
            runs: dict[str, list[tuple[float, float]]] = {"lazy": [], "eager": []}
            for _ in range(repeat):
                for way in ("lazy", "eager"):
                    runs[way].append(_seconds(_command(way, args), env))
            for way in ("eager", "lazy"):
                figures[f"{name}_s_{way}"] = round(statistics.median(wall for wall, _ in runs[way]), 3)
                figures[f"{name}_cpu_s_{way}"] = round(statistics.median(cpu for _, cpu in runs[way]), 3)
            print(f"{name:12s} eager {figures[f'{name}_s_eager']:6.3f} s ({figures[f'{name}_cpu_s_eager']:.3f} s CPU)"
                  f"   lazy {figures[f'{name}_s_lazy']:6.3f} s ({figures[f'{name}_cpu_s_lazy']:.3f} s CPU)")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
