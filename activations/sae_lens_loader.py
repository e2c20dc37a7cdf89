"""SAEs and transcoders loaded through SAELens itself (the `saelens` extra: pip install 'autointerp[saelens]').

- A SAELens folder on disk (cfg.json + sae_weights.safetensors), of any architecture SAELens registers
  (standard, gated, jumprelu, topk, transcoder, skip_transcoder, jumprelu_transcoder ...): `SAE.load_from_disk`.
- `RELEASE/SAE_ID` from SAELens's pretrained directory (downloaded from the Hugging Face Hub; a Hub repo id
  `owner/repo/SAE_ID` works too): `SAE.from_pretrained`. Refused while HF_HUB_OFFLINE is set (not every
  SAELens loader honours it).
Both load in float32 on the CPU (collection moves the SAE to the model's device), and SAELens's own `encode`
gives the latents. Before SAELens reads a folder, its cfg.json fields and tensor shapes are checked here, so a
malformed folder fails with one error naming the file and the field or tensor.
"""

from __future__ import annotations

import dataclasses
import difflib
from pathlib import Path
from typing import Any

from activations.hooks import HookPoint
from activations.sae import Sae, SaeError
from activations.sae_files import INSTALL, check_fields, check_shapes, hook_of, read_json, safetensors_shapes

_LIBRARY_ERRORS = (ValueError, KeyError, TypeError, RuntimeError, OSError)  # what SAELens raises on bad input


def available() -> bool:
    try:
        import sae_lens  # noqa: F401  (imported once here; every use below needs it anyway)
    except ImportError:
        return False
    return True


def _require(what: str) -> None:
    if not available():
        raise SaeError(f"{what} needs SAELens, which is not installed: {INSTALL}")


def _version() -> str:
    import sae_lens

    return f"sae_lens {sae_lens.__version__}"


def _classes(architecture: Any, cfg_file: Path) -> tuple[Any, Any]:
    from sae_lens.registry import SAE_CLASS_REGISTRY

    if architecture not in SAE_CLASS_REGISTRY:
        raise SaeError(f"SAE config {cfg_file}: field 'architecture' is {architecture!r}, which SAELens does not "
                       f"load; it loads {', '.join(sorted(SAE_CLASS_REGISTRY))}")
    return SAE_CLASS_REGISTRY[architecture]


def check_folder(folder: Path) -> dict[str, Any]:
    """The folder's config as SAELens reads it, after checking its required fields and that every tensor
    SAELens will load is in the weights file with the shape the config gives."""
    from sae_lens.loading.pretrained_sae_loaders import handle_config_defaulting

    cfg_file, weights_file = folder / "cfg.json", folder / "sae_weights.safetensors"
    raw = read_json(cfg_file)
    if not raw.get("architecture") and (raw.get("metadata") or {}).get("sae_lens_version"):
        raise SaeError(f"SAE config {cfg_file}: field 'architecture' is missing")
    try:
        cfg = handle_config_defaulting(dict(raw))  # SAELens's own upgrade of configs written before 6.0
    except KeyError:
        raise SaeError(f"SAE config {cfg_file}: field 'architecture' is {raw.get('architecture')!r}, which SAELens "
                       "does not load") from None
    sae_class, cfg_class = _classes(cfg.get("architecture"), cfg_file)
    # k has a default in SAELens's TopK configs, but a TopK file that lacks it is malformed, not a default.
    required = [f.name for f in dataclasses.fields(cfg_class) if f.name == "k"
                or (f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)]
    check_fields(cfg, required, cfg_file, f"a {cfg['architecture']} SAE")
    try:
        shell = sae_class(cfg_class.from_dict({**cfg, "device": "meta"}))  # shapes only: no memory
    except _LIBRARY_ERRORS as exc:
        raise SaeError(f"SAE config {cfg_file}: SAELens rejects it: {exc}") from None
    shapes = safetensors_shapes(weights_file)
    expected = {key: tuple(t.shape) for key, t in shell.state_dict().items()}
    if "threshold" in expected and "threshold" not in shapes and "log_threshold" in shapes:
        expected["log_threshold"] = expected.pop("threshold")  # older JumpReLU files: SAELens converts it
    dims = ", ".join(f"{k}={cfg[k]}" for k in ("d_in", "d_sae", "d_out") if k in cfg)
    check_shapes(shapes, expected, weights_file, f"cfg.json ({dims})")
    return cfg


def load_folder(folder: Path) -> Sae:
    _require(f"SAE {folder} (a SAELens folder)")
    check_folder(folder)
    from sae_lens import SAE

    try:
        module = SAE.load_from_disk(folder, device="cpu", dtype="float32")
    except _LIBRARY_ERRORS as exc:
        raise SaeError(f"SAE {folder}: SAELens could not load it: {exc}") from None
    return from_module(module, name=folder.name, path=str(folder), cfg_file=folder / "cfg.json")


def split_spec(spec: str, releases: list[str]) -> tuple[str, str]:
    """`RELEASE/SAE_ID` -> (release, sae_id). Release names hold no '/', but a Hub repo id used as the release
    does (`owner/repo/SAE_ID`), and SAE ids often do (`layer_5/width_16k/canonical`)."""
    known = [r for r in releases if spec.startswith(r + "/") and len(spec) > len(r) + 1]
    if known:
        release = max(known, key=len)
        return release, spec[len(release) + 1:]
    parts = spec.split("/")
    if len(parts) >= 3 and all(parts):
        return "/".join(parts[:2]), "/".join(parts[2:])
    close = difflib.get_close_matches(spec.split("/")[0], releases, n=3)
    hint = f" (close: {', '.join(close)})" if close else ""
    raise SaeError(f"--sae saelens:{spec}: no SAELens release{hint}; write saelens:RELEASE/SAE_ID with a release "
                   "from SAELens's pretrained directory, or saelens:OWNER/REPO/SAE_ID for a Hub repository")


def load_pretrained(spec: str) -> Sae:
    """`RELEASE/SAE_ID` through `SAE.from_pretrained` (downloads once, then the Hugging Face cache)."""
    _require(f"--sae saelens:{spec}")
    from sae_lens import SAE
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    directory = get_pretrained_saes_directory()
    release, sae_id = split_spec(spec, list(directory))
    if release in directory and sae_id not in directory[release].saes_map:
        ids = list(directory[release].saes_map)
        close = difflib.get_close_matches(sae_id, ids, n=3) or ids[:3]
        raise SaeError(f"--sae saelens:{spec}: release {release!r} has no SAE {sae_id!r} (e.g. {', '.join(close)})")
    _refuse_offline(spec, release, sae_id)
    try:
        module = SAE.from_pretrained(release, sae_id, device="cpu", dtype="float32")
    except _LIBRARY_ERRORS as exc:
        reason = " ".join(str(exc).split())
        raise SaeError(f"--sae saelens:{spec}: SAELens could not load {release}/{sae_id} ({type(exc).__name__}: "
                       f"{reason}); it downloads from the Hugging Face Hub") from None
    return from_module(module, name=f"{release}/{sae_id}", path=f"saelens:{release}/{sae_id}", cfg_file=None)


def _refuse_offline(spec: str, release: str, sae_id: str) -> None:
    """Some of SAELens's loaders (Gemma Scope 2's) ask the Hub for tensor shapes with plain HTTP even when
    HF_HUB_OFFLINE is set: offline, a `saelens:` spec stops here rather than reach for the network."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        raise SaeError(f"--sae saelens:{spec}: HF_HUB_OFFLINE is set, and SAELens loads {release}/{sae_id} from the "
                       "Hugging Face Hub. Unset HF_HUB_OFFLINE, or once online save it (SAE.from_pretrained(...)"
                       ".save_model(FOLDER)) and pass --sae FOLDER")


def from_module(module: Any, *, name: str, path: str, cfg_file: Path | None) -> Sae:
    """Our Sae around a loaded SAELens SAE: hook points from its metadata, decoder for weight evidence."""
    metadata = module.cfg.metadata
    where = cfg_file if cfg_file is not None else Path(path)

    def hook(field: str) -> HookPoint | None:
        text = metadata.get(field)
        return hook_of(text, None, where, f"metadata.{field}") if text else None

    if metadata.get("hook_head_index") is not None:
        raise SaeError(f"SAE {path}: SAEs of one attention head (hook_head_index) are not supported")
    return Sae(
        name=name, path=path, format="saelens", architecture=module.cfg.architecture(),
        k=getattr(module.cfg, "k", None), hook=hook("hook_name"), hook_out=hook("hook_name_out"),
        W_dec=module.W_dec.detach(), module=module, loader=_version(),
    )
