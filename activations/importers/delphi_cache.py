"""Read and validate a delphi (EleutherAI/delphi) latent cache: `<cache>/<hookpoint>/config.json` and shards
`<cache>/<hookpoint>/<first>_<last>.safetensors`, each holding `locations` [n, 3] (sequence, position, latent index
relative to `first`), `activations` [n] and `tokens` [sequences, cache_ctx_len] of the cached sequences.

Everything is checked before anything is returned, so an import of a malformed cache writes nothing.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from activations.importers.common import ImportFormatError

_SHARD_NAME = re.compile(r"^(\d+)_(\d+)\.safetensors$")


@dataclass
class DelphiShard:
    path: Path
    first: int  # the layer index of the shard's latent 0
    last: int  # inclusive, as delphi names the files
    locations: np.ndarray  # [n, 3] int64: sequence, position, latent index relative to `first`
    activations: np.ndarray  # [n] float32


@dataclass
class DelphiHookpoint:
    name: str  # the hookpoint's folder, e.g. layers.6.mlp
    layer: int
    config: dict[str, Any]  # delphi's CacheConfig plus model_name
    tokens: np.ndarray  # [sequences, cache_ctx_len] int64
    shards: list[DelphiShard]


def hookpoint_dirs(path: Path) -> list[Path]:
    """The folder itself or its subfolders that hold .safetensors shards (each must have its config.json)."""
    candidates = [path, *sorted(p for p in path.iterdir() if p.is_dir())]
    return [d for d in candidates if any(d.glob("*.safetensors"))]


def read_delphi_cache(path: Path) -> list[DelphiHookpoint]:
    """Every hookpoint of the cache, fully validated; ImportFormatError names the file and field at fault."""
    dirs = hookpoint_dirs(path)
    if not dirs:
        raise ImportFormatError(f"{path}: not a delphi cache (no <hookpoint>/<first>_<last>.safetensors files)")
    return [_read_hookpoint(d) for d in dirs]


def _read_hookpoint(folder: Path) -> DelphiHookpoint:
    config = _read_config(folder / "config.json")
    layer = _layer_of(folder)
    shards, tokens = [], None
    for file in sorted(folder.glob("*.safetensors")):
        shard, shard_tokens = _read_shard(file, int(config["cache_ctx_len"]))
        if tokens is None:
            tokens = shard_tokens
        elif not np.array_equal(tokens, shard_tokens):
            raise ImportFormatError(f"{file}: field 'tokens' differs from the other shards of {folder.name}; "
                                    "every shard of a hookpoint must hold the same cached sequences")
        shards.append(shard)
    assert tokens is not None  # hookpoint_dirs only returns folders with shards
    for shard in shards:
        _check_sequences(shard, len(tokens))
    return DelphiHookpoint(name=folder.name, layer=layer, config=config, tokens=tokens, shards=shards)


def _read_config(file: Path) -> dict[str, Any]:
    if not file.is_file():
        raise ImportFormatError(f"{file}: missing; delphi writes each hookpoint's config.json (with cache_ctx_len) "
                                "beside its shards")
    try:
        config = json.loads(file.read_text("utf-8"))
    except json.JSONDecodeError as exc:
        raise ImportFormatError(f"{file}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(config, dict):
        raise ImportFormatError(f"{file}: expected delphi's cache config object, got {type(config).__name__}")
    ctx = config.get("cache_ctx_len")
    if isinstance(ctx, bool) or not isinstance(ctx, int) or ctx < 1:
        raise ImportFormatError(f"{file}: field 'cache_ctx_len': expected a positive integer, got {ctx!r}")
    return config


def layer_of_hookpoint(name: str) -> int | None:
    """The layer a delphi hookpoint (module path) names: its one number (layers.6.mlp, model.layers.6 -> 6)."""
    numbers = re.findall(r"\d+", name)
    return int(numbers[0]) if len(numbers) == 1 else None


def _layer_of(folder: Path) -> int:
    layer = layer_of_hookpoint(folder.name)
    if layer is None:
        raise ImportFormatError(f"{folder}: cannot tell the layer from the hookpoint name {folder.name!r}; name the "
                                "folder by its module path with one layer number, e.g. layers.6.mlp")
    return layer


def _read_shard(file: Path, ctx_len: int) -> tuple[DelphiShard, np.ndarray]:
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    match = _SHARD_NAME.match(file.name)
    if not match or int(match[1]) > int(match[2]):
        raise ImportFormatError(f"{file}: a shard is named <first latent>_<last latent>.safetensors, e.g. 0_1023")
    first, last = int(match[1]), int(match[2])
    try:
        data = load_file(str(file))
    except (SafetensorError, OSError) as exc:
        raise ImportFormatError(f"{file}: not a readable safetensors file ({exc})") from None
    for key in ("locations", "activations", "tokens"):
        if key not in data:
            raise ImportFormatError(f"{file}: field {key!r} missing (delphi writes it with save_tokens=True; "
                                    f"present: {', '.join(sorted(data)) or 'none'})")
    locations, activations, tokens = data["locations"], data["activations"], data["tokens"]
    _check_shapes(file, locations, activations, tokens, ctx_len)
    locations = locations.astype(np.int64)
    bad = np.flatnonzero(locations[:, 1] >= ctx_len)
    if len(bad):
        raise ImportFormatError(f"{file}: field 'locations' row {bad[0]}: position {locations[bad[0], 1]} is out "
                                f"of range (config.json cache_ctx_len is {ctx_len})")
    bad = np.flatnonzero(locations[:, 2] > last - first)
    if len(bad):
        raise ImportFormatError(f"{file}: field 'locations' row {bad[0]}: latent index {locations[bad[0], 2]} is "
                                f"out of range for this shard of latents {first}..{last} (at most {last - first})")
    values = activations.astype(np.float32)
    if not np.isfinite(values).all():
        raise ImportFormatError(f"{file}: field 'activations' row {np.flatnonzero(~np.isfinite(values))[0]}: "
                                "not a finite number")
    return DelphiShard(file, first, last, locations, values), tokens.astype(np.int64)


def _check_shapes(file: Path, locations: np.ndarray, activations: np.ndarray, tokens: np.ndarray,
                  ctx_len: int) -> None:
    if locations.ndim != 2 or locations.shape[1] != 3 or locations.dtype.kind not in "iu":
        raise ImportFormatError(f"{file}: field 'locations': expected integers of shape [n, 3] (sequence, "
                                f"position, latent), got {locations.dtype} {list(locations.shape)}")
    if activations.shape != (len(locations),):
        raise ImportFormatError(f"{file}: field 'activations': expected shape [{len(locations)}] (one per "
                                f"location), got {list(activations.shape)}")
    if tokens.ndim != 2 or tokens.shape[1] != ctx_len or tokens.dtype.kind not in "iu":
        raise ImportFormatError(f"{file}: field 'tokens': expected integers of shape [sequences, {ctx_len}] "
                                f"(config.json cache_ctx_len), got {tokens.dtype} {list(tokens.shape)}")
    if locations.dtype.kind == "i" and (locations < 0).any():
        raise ImportFormatError(f"{file}: field 'locations' row {np.flatnonzero((locations < 0).any(1))[0]}: "
                                "negative index")


def _check_sequences(shard: DelphiShard, n_sequences: int) -> None:
    seq = shard.locations[:, 0]
    if len(seq) and seq.max() >= n_sequences:
        row = int(np.argmax(seq))
        raise ImportFormatError(f"{shard.path}: field 'locations' row {row}: sequence {seq[row]} is out of range "
                                f"(field 'tokens' holds {n_sequences} sequences)")
