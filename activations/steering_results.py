"""What steering one feature gives: the continuations at the strength found (`SteeringResult`), or why it could
not be steered (`SteeringFailure`). Plain data, no torch: storage, the scorers and the explainer read these
without loading a model."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SteeringResult:
    """One feature steered: the strength found, the KL it gives, and per neutral prompt one steered and
    `n_unsteered` unsteered continuations (the text after the prompt)."""

    strength: float
    kl: float
    target_kl: float
    prompts: tuple[str, ...]
    steered: tuple[str, ...]
    unsteered: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class SteeringFailure:
    """A feature the search could not steer to the target KL: why, and the strongest try."""

    reason: str
    strength: float | None = None
    kl: float | None = None
