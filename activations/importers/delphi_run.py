"""Read and validate a delphi (EleutherAI/delphi) run's explanation and score files, as `delphi/__main__.py` writes
them under the run folder (`results/<name>/`):

- `run_config.json`: the run's RunConfig (subject model, explainer model and provider, scorers, fuzz_type,
  log_probs, examples per scorer prompt, constructor_cfg with non_activating_source, sampler_cfg, seed);
- `explanations/<module>_latent<i>.txt`: the explanation, a JSON string (`orjson.dumps(result.explanation)`);
- `scores/<scorer>/<module>_latent<i>.txt`: the classifier scorers' (`detection`, `fuzz`) per-example results, a JSON
  list of ClassifierOutput objects (`delphi/scorers/classifier/sample.py`: str_tokens, activations, distance,
  activating, prediction, probability, correct); `prediction` and `probability` are null where the judge's answer
  failed or gave no logprobs.

Everything is checked before anything is returned, so an import of a malformed run writes nothing.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from activations.importers.common import Fields, ImportFormatError
from activations.importers.delphi_cache import layer_of_hookpoint

_LATENT_FILE = re.compile(r"^(?P<module>.+)_latent(?P<index>\d+)\.txt$")
RUN_CONFIG = "run_config.json"


@dataclass(frozen=True)
class DelphiExample:
    """One judged example of a classifier score file (delphi's ClassifierOutput)."""

    str_tokens: list[str]
    activations: list[float]
    distance: float  # the activating example's quantile, or the non-activating one's (neighbour) distance
    activating: bool
    prediction: bool | None  # None: the judge's answer for this example could not be read
    probability: float | None  # P(1) from logprobs; None without logprobs or on a failure


@dataclass
class DelphiScoreFile:
    scorer: str  # delphi's scorer name: the folder under scores/ (detection, fuzz, simulation)
    path: Path
    examples: list[DelphiExample]


@dataclass
class DelphiLatent:
    module: str  # delphi's module name (the hookpoint), e.g. layers.3.mlp
    index: int
    layer: int
    explanation: str
    path: Path  # the explanation file
    scores: list[DelphiScoreFile] = field(default_factory=list)


@dataclass
class DelphiRun:
    path: Path
    config: dict[str, Any]  # run_config.json
    latents: list[DelphiLatent]
    unread: list[Path]  # score files of scorers whose per-example format is not the classifiers' (simulation)


def is_delphi_run(path: Path) -> bool:
    """A delphi run folder: explanations/ or scores/ holding <module>_latent<i>.txt files."""
    return path.is_dir() and any(any((path / sub).rglob("*_latent*.txt")) for sub in ("explanations", "scores")
                                 if (path / sub).is_dir())


def read_delphi_run(path: Path) -> DelphiRun:
    """The run's explanations and classifier scores, fully validated; ImportFormatError names file and field."""
    config = _read_run_config(path / RUN_CONFIG)
    latents: dict[tuple[str, int], DelphiLatent] = {}
    for file in sorted((path / "explanations").glob("*")) if (path / "explanations").is_dir() else []:
        module, index = _latent_name(file)
        latents[(module, index)] = DelphiLatent(module, index, _layer(file, module), _read_explanation(file), file)
    unread: list[Path] = []
    for folder in sorted(p for p in (path / "scores").glob("*") if p.is_dir()) if (path / "scores").is_dir() else []:
        for file in sorted(folder.glob("*")):
            module, index = _latent_name(file)
            if (module, index) not in latents:
                raise ImportFormatError(f"{file}: no explanation file explanations/{file.name} beside it; a score is "
                                        "imported with the explanation it scored")
            if folder.name == "simulation":
                unread.append(file)
                continue
            latents[(module, index)].scores.append(DelphiScoreFile(folder.name, file, _read_score_file(file)))
    return DelphiRun(path, config, list(latents.values()), unread)


def _read_json(file: Path) -> Any:
    try:
        return json.loads(file.read_text("utf-8"))
    except json.JSONDecodeError as exc:
        raise ImportFormatError(f"{file}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except UnicodeDecodeError:
        raise ImportFormatError(f"{file}: not UTF-8 text") from None


def _read_run_config(file: Path) -> dict[str, Any]:
    if not file.is_file():
        raise ImportFormatError(f"{file}: missing; delphi writes the run's run_config.json beside explanations/ and "
                                "scores/, and it says how the scores were made (scorer settings, explainer model)")
    config = _read_json(file)
    if not isinstance(config, dict):
        raise ImportFormatError(f"{file}: expected delphi's RunConfig object, got {type(config).__name__}")
    f = Fields(str(file))
    for key in ("model", "explainer_model"):
        if not isinstance(config.get(key, ""), str):
            raise f.fail(key, f"expected a string, got {config[key]!r}")
    constructor = f.get(config, "constructor_cfg", "", required=False, default={})
    source = f.get(constructor, "non_activating_source", "constructor_cfg", required=False, default="random")
    if source not in ("random", "neighbours", "FAISS"):
        raise f.fail("constructor_cfg.non_activating_source", f"expected random, neighbours or FAISS, got {source!r}")
    if config.get("fuzz_type", "default") not in ("default", "active"):
        raise f.fail("fuzz_type", f"expected default or active, got {config['fuzz_type']!r}")
    return {k: v for k, v in config.items() if k != "hf_token"}  # delphi writes none; never keep a token


def _latent_name(file: Path) -> tuple[str, int]:
    match = _LATENT_FILE.match(file.name)
    if not match:
        raise ImportFormatError(f"{file}: delphi names a latent's file <module>_latent<index>.txt, e.g. "
                                "layers.3.mlp_latent2.txt")
    # delphi writes a module path's "/" as "--" in score file names
    return match["module"].replace("--", "/"), int(match["index"])


def _layer(file: Path, module: str) -> int:
    layer = layer_of_hookpoint(module)
    if layer is None:
        raise ImportFormatError(f"{file}: cannot tell the layer from the module name {module!r}; delphi's module "
                                "names carry one layer number, e.g. layers.3.mlp")
    return layer


def _read_explanation(file: Path) -> str:
    text = _read_json(file)
    if not isinstance(text, str) or not text.strip():
        raise ImportFormatError(f"{file}: expected the explanation as a non-empty JSON string (delphi writes "
                                f"orjson.dumps(explanation)), got {text!r:.80}")
    return text


def _read_score_file(file: Path) -> list[DelphiExample]:
    data = _read_json(file)
    if not isinstance(data, list) or not data:
        raise ImportFormatError(f"{file}: expected a non-empty JSON list of per-example results (delphi's "
                                f"ClassifierOutput objects), got {type(data).__name__}")
    f = Fields(str(file))
    return [_example(f, item, f"[{i}]") for i, item in enumerate(data)]


def _example(f: Fields, item: Any, path: str) -> DelphiExample:
    tokens = f.strings(f.get(item, "str_tokens", path), f"{path}.str_tokens")
    activations = f.numbers(f.get(item, "activations", path), f"{path}.activations")
    if len(activations) != len(tokens):
        raise f.fail(f"{path}.activations", f"{len(activations)} values for {len(tokens)} str_tokens")
    activating = f.get(item, "activating", path)
    if not isinstance(activating, bool):
        raise f.fail(f"{path}.activating", f"expected true or false, got {activating!r}")
    prediction = f.get(item, "prediction", path)
    if prediction is not None and not isinstance(prediction, bool) and prediction not in (0, 1):
        raise f.fail(f"{path}.prediction", f"expected true, false or null, got {prediction!r}")
    probability = f.number(f.get(item, "probability", path), f"{path}.probability", allow_none=True)
    if probability is not None and not 0.0 <= probability <= 1.0:
        raise f.fail(f"{path}.probability", f"expected a probability in [0, 1] or null, got {probability!r}")
    if prediction is None and probability is not None:
        raise f.fail(f"{path}.probability", "a probability without a prediction")
    return DelphiExample(tokens, activations, f.number(f.get(item, "distance", path), f"{path}.distance"),
                         activating, None if prediction is None else bool(prediction), probability)
