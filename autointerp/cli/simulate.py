"""`autointerp simulate`: simulate one or more explanations on a records file and print one JSON document."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path

import click

from activations.errors import UserError
from activations.vocab import ScoreMethod
from autointerp.cli import summary
from autointerp.cli.errors import Command
from autointerp.settings import get_settings
from scorer import METHODS, bootstrap_ci
from simulator import SPEC_HELP, SimulationError, Simulator, make_simulator


class RecordsFileError(UserError):
    """The records file is unreadable or malformed; the message names the file and record."""


def read_records(path: str) -> tuple[list[list[str]], list[list[float]] | None]:
    """Tokens per record, and activations per record when the file has them (all records or none)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise RecordsFileError(f"{path}: cannot read it ({exc})") from None
    except json.JSONDecodeError as exc:
        raise RecordsFileError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno} column {exc.colno})") from None
    if not isinstance(data, list) or not data:
        raise RecordsFileError(
            f'{path}: expected a non-empty JSON list of records like {{"tokens": [...], "activations": [...]}}')
    tokens: list[list[str]] = []
    acts: list[list[float] | None] = []
    for i, rec in enumerate(data):
        where = f"{path}: record {i}"
        if not isinstance(rec, dict) or "tokens" not in rec:
            raise RecordsFileError(f'{where}: expected an object with a "tokens" list')
        toks = rec["tokens"]
        if not isinstance(toks, list) or not toks or not all(isinstance(t, str) for t in toks):
            raise RecordsFileError(f'{where}: "tokens" must be a non-empty list of strings')
        tokens.append(toks)
        a = rec.get("activations")
        if a is not None:
            if not isinstance(a, list) or len(a) != len(toks):
                raise RecordsFileError(f'{where}: "activations" must be a list with one number per token ({len(toks)})')
            if not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in a):
                raise RecordsFileError(f'{where}: "activations" must all be finite numbers')
        acts.append(a)
    have = [a is not None for a in acts]
    if any(have) and not all(have):
        raise RecordsFileError(f"{path}: record {have.index(False)} has no activations but record "
                               f"{have.index(True)} does; "
                               "give activations for every record or for none")
    return tokens, ([a for a in acts if a is not None] if all(have) else None)


def scores_of(real: list[list[float]], predicted: list[list[float]]) -> dict:
    out: dict = {}
    reasons = {}
    for fn in METHODS.values():  # the scorer's own list: every method it stores
        s = fn(real, predicted)
        out[s.method] = s.value
        if s.value is None:
            reasons[s.method] = s.undefined_reason
    if out[ScoreMethod.EV_CORRELATION] is not None:
        out["ev_correlation_ci95"] = list(bootstrap_ci(real, predicted, ScoreMethod.EV_CORRELATION))
    if reasons:
        out["undefined_reasons"] = reasons
    return out


async def _run(simulator: Simulator, explanations: list[str], tokens: list[list[str]],
               acts: list[list[float]] | None) -> list[dict]:
    results: list[dict] = []
    try:
        for explanation in explanations:
            try:
                sims = await simulator.simulate(explanation, tokens)
            except SimulationError as exc:
                results.append({"explanation": explanation, "error": exc.reason})
                continue
            expected = [s.expected_activations for s in sims]
            entry: dict = {"explanation": explanation, "expected_activations": expected}
            if acts is not None:
                entry["scores"] = scores_of(acts, expected)
            results.append(entry)
    finally:
        await simulator.aclose()
    return results


@click.command("simulate", cls=Command, short_help=summary("simulate"))
@click.option("--simulator", "spec", required=True, metavar="SPEC", help=f"Simulator to use: {SPEC_HELP}.")
@click.option("--explanation", "explanations", required=True, multiple=True, metavar="TEXT",
              help="Explanation to simulate; repeat to compare several on the same records.")
@click.option("--records", "records_path", required=True, metavar="FILE.json",
              help='JSON list of records: [{"tokens": [...], "activations": [...]}]; activations optional.')
@click.option("--base-url", default=None, metavar="URL",
              help="OpenAI-compatible endpoint for openai: specs (default $OPENAI_BASE_URL).")
@click.option("--device", default="auto", show_default=True,
              help="Device for local models: auto, cpu, cuda, cuda:1, ...")
def simulate(spec: str, explanations: tuple[str, ...], records_path: str, base_url: str | None, device: str) -> None:
    """Predict per-token activations from an explanation; score them when the records carry activations.

    \b
    Prints one JSON document: for a single --explanation
      {"simulator": ..., "explanation": ..., "expected_activations": [[...]], "scores": {...}}
    and for several, {"simulator": ..., "results": [{"explanation": ..., "expected_activations": ..., "scores": ...}]}.
    Scores (pooled over all tokens): ev_correlation, rsquared, absolute_dev_explained, spearman,
    mean_record_correlation;
    null with a reason under "undefined_reasons" when undefined (e.g. constant activations).

    \b
    Example:
      echo '[{"tokens": ["The", " red", " car"], "activations": [0, 5, 0]}]' > recs.json
      autointerp simulate --simulator embedding --explanation "colour words" --records recs.json
    """
    try:
        tokens, acts = read_records(records_path)
        simulator = make_simulator(spec, base_url=base_url or get_settings().openai_base_url, device=device)
        results = asyncio.run(_run(simulator, list(explanations), tokens, acts))
    except SimulationError as exc:  # the simulator could not produce values: reported, not a bug
        raise click.ClickException(str(exc)) from None
    if len(results) == 1:
        if "error" in results[0]:
            raise click.ClickException(f"simulation failed: {results[0]['error']}")
        doc = {"simulator": simulator.spec, **results[0]}
    else:
        doc = {"simulator": simulator.spec, "results": results}
    click.echo(json.dumps(doc))
    if any("error" in r for r in results):
        raise SystemExit(1)


COMMANDS = [simulate]
