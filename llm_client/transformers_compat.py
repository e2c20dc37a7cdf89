"""Calling transformers quietly and under either version's names: its per-load progress bars and advice stay
out of the user's output, and a KV cache goes in (and comes back) under the name the installed version uses."""

from __future__ import annotations

import inspect
from typing import Any


def quiet_transformers() -> None:
    """Before loading a model: no "Loading weights" bars and no logged advice from transformers (errors still
    show). The CLI reports progress itself; the library's bars around it are noise in a log."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def cache_kwarg(forward_of: Any, cache: Any) -> dict[str, Any]:
    """`{name: cache}` for a model's forward: newer transformers call the argument `cache` and warn (a
    FutureWarning in the user's output) on every call that passes `past_key_values`; older ones know only that."""
    model_class = type(forward_of)
    name = _CACHE_NAMES.get(model_class)
    if name is None:  # once per model class: callers pass the cache on every decoding step
        name = "cache" if "cache" in inspect.signature(model_class.forward).parameters else "past_key_values"
        _CACHE_NAMES[model_class] = name
    return {name: cache}


_CACHE_NAMES: dict[type, str] = {}  # model class -> the name its forward takes the KV cache under


def returned_cache(output: Any) -> Any:
    """The KV cache a forward returned, read without the deprecated `past_key_values` where `cache` exists."""
    return output.cache if "cache" in getattr(output, "__dataclass_fields__", {}) else output.past_key_values
