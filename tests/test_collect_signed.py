"""A signed collection of gemma-3-270m: the dense MLP neurons of a gated model go both ways, and neuron 630 of layer 6
reaches far further below zero than above it. `bottom_k` keeps its most negative windows, balanced against its
random records like its top ones, with activations as the model computes them."""

from __future__ import annotations

import pytest

from activations.collect import collect
from activations.collect_config import CollectConfig, neuron_target
from activations.corpus import open_corpus
from activations.sampling import SamplerConfig
from llm_client.local_models import load_model

pytestmark = pytest.mark.slow
MODEL, LAYER, NEURON = "gemma-3-270m", 6, 630


@pytest.fixture(scope="module")
def collected():
    loaded = load_model(MODEL, device="cpu")
    config = CollectConfig(ctx_len=32, max_tokens=1500, batch_size=16,
                           sampler=SamplerConfig(top_k=10, n_random=10, n_quantiles=2, per_quantile=2, bottom_k=10))
    return collect(loaded.model, loaded.tokenizer, open_corpus(), [neuron_target(LAYER)], MODEL, config)[
        neuron_target(LAYER)]


def test_the_signed_neuron_keeps_its_most_negative_windows(collected):
    fr = collected[NEURON]
    assert -fr.stats.min_activation > fr.stats.max_activation > 0  # its negative side is the larger one
    bottoms = fr.select(samples=["bottom"])
    assert len(bottoms) == 10 and all(min(r.activations) < 0 for r in bottoms)
    lows = [min(r.activations) for r in bottoms]
    assert lows == sorted(lows) and lows[0] == pytest.approx(fr.stats.min_activation)  # most negative first
    for split in ("valid", "test"):
        assert len(fr.select(samples=["bottom"], data_splits=[split])) == \
            len(fr.select(samples=["random"], data_splits=[split])) == 2
    assert len(fr.select(samples=["top"])) == 10  # the positive side is kept as before


def test_a_neuron_that_never_goes_below_zero_has_no_bottom_records(collected):
    never = [fr for fr in collected if fr.stats.min_activation is not None and fr.stats.min_activation >= 0]
    assert all(not fr.select(samples=["bottom"]) for fr in never)
    assert sum(1 for fr in collected if fr.select(samples=["bottom"])) > len(collected) // 2  # gated: most go both ways
