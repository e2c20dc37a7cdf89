"""`explain --evidence ...+steering`: each feature's stored steering under the run's steering configuration, read
for the prompt, and the check that refuses a run (before any LLM call) when some feature was never steered."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.orm import Session

from autointerp.workflows.options import ExplainOptions, OptionsError
from explainer.evidence import StoredSteering
from storage.core.schema import Feature
from storage.results import already_done

# steer_run and steering_store (and torch with them) are imported only when a prompt shows steering: explain runs
# without it do not load torch for it.


def steering_inputs(session: Session, features: Sequence[Feature], opts: ExplainOptions) -> dict[int, StoredSteering]:
    """Each feature's stored steering, by feature row id (empty when the prompt shows no steering)."""
    if not opts.with_steering():
        return {}
    from autointerp.workflows.steer_run import steering_config
    from storage.results.steering_store import steering_result

    config = opts.steering()
    return {f.id: StoredSteering(steering_result(session, f.id, steering_config(f, config))) for f in features}


def check_steering_stored(session: Session, opts: ExplainOptions, features: Sequence[Feature]) -> None:
    """With steering in --evidence, every feature to explain needs a steering result (ok or failed: a failed one
    fails only its feature, with the reason) under the run's steering configuration: refuse before any LLM call,
    naming the features and the `autointerp steer` command that stores it."""
    if not opts.with_steering() or not features:
        return
    from autointerp.workflows.steer_run import steering_config

    config = opts.steering()
    by_config: dict[str, list[Feature]] = {}
    for feature in features:  # one layer's features share a configuration (model and hook point)
        by_config.setdefault(repr(sorted(steering_config(feature, config).items())), []).append(feature)
    missing: list[int] = []
    for group in by_config.values():
        done = already_done.steered(session, [f.id for f in group], steering_config=steering_config(group[0], config))
        missing += [f.index for f in group if f.id not in done]
    if missing:
        sae = f" --sae {opts.sae}" if opts.sae else ""
        shown = ",".join(str(i) for i in sorted(missing)[:20]) + ("..." if len(missing) > 20 else "")
        raise OptionsError(
            f"--evidence {opts.evidence}: {len(missing)} of the {len(features)} features to explain have no stored "
            f"steering at target KL {config.target_kl} (features {shown}); store it with `autointerp steer --model "
            f"{opts.model} --layer {opts.layer}{sae} --features {opts.features} --target-kl {config.target_kl}`, or "
            "explain without steering in --evidence")
