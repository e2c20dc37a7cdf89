"""What a batch run was asked to do: the options of `explain` and `rescore`, and feature selection."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from activations.vocab import Polarity


class OptionsError(ValueError):
    """An option value is unusable; the message says which and what to pass instead."""


def parse_features(spec: str) -> list[int] | None:
    """`all` -> None; `0-99` -> 0..99; `1,5,9` and mixes like `0-9,20` -> sorted unique indices."""
    spec = spec.strip()
    if spec == "all":
        return None
    out: set[int] = set()
    for part in spec.split(","):
        part = part.strip()
        try:
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-", 1))
                if lo > hi:
                    raise OptionsError(f"--features: range {part!r} runs backwards; write {hi}-{lo}")
                out.update(range(lo, hi + 1))
            else:
                out.add(int(part))
        except ValueError:
            raise OptionsError(f"--features: {part!r} is not an index or range; use all, 0-99 or 1,5,9") from None
    if any(i < 0 for i in out):
        raise OptionsError("--features: indices must be >= 0")
    return sorted(out)


@dataclass
class BatchOptions:
    """What every batch over a layer's features shares: which features, how to simulate, how wide."""

    model: str = "gemma-3-270m"
    layer: int = 0
    sae: str | None = None
    features: str = "all"
    concurrency: int = 4
    simulator: str = "embedding"
    simulator_base_url: str | None = None
    device: str = "auto"
    sanity: bool = True  # also score another feature's explanation (the shuffled baseline)
    seed: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class ExplainOptions(BatchOptions):
    explainer: str = "local:gemma-3-270m"
    base_url: str | None = None
    fmt: str = "auto"  # token_activation_pairs for chat models, snippets for base models
    n_candidates: int = 1
    polarity: str = Polarity.POSITIVE
    temperature: float | None = None  # None: 0 for one candidate, 1.0 for several (they must differ)
    max_explanation_tokens: int = 60
    request_timeout_s: float = 60.0
    budget_usd: float | None = None
    retry_failed: bool = False
    dry_run: bool = False

    def explain_config(self, prompt_version: str) -> dict:
        """What makes two explanations 'the same work': rerunning it skips the feature."""
        return {"explainer": self.explainer, "fmt": self.fmt, "prompt_version": prompt_version,
                "n_candidates": self.n_candidates, "polarity": self.polarity, "temperature": self.effective_temperature,
                "max_tokens": self.max_explanation_tokens, "simulator": self.simulator}

    @property
    def effective_temperature(self) -> float:
        if self.temperature is not None:
            return self.temperature
        return 0.0 if self.n_candidates == 1 else 1.0


@dataclass
class RescoreOptions(BatchOptions):
    explainer: str | None = None  # only explanations by this explainer
