"""`--explainer-sample`: which train records the explainer sees (top, quantiles, random, mixed), seeded draws,
the 0..10 scale at the top shown record, and the CLI keeping each choice's explanations apart."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from sqlalchemy import String, select

from activations.records import ActivationRecord, FeatureId, FeatureRecords
from autointerp.cli import main
from explainer.fitting import rank_records, scale
from explainer.prompts import EVIDENCE_CHOICES, PROMPT_VERSIONS, prompt_version
from explainer.sampling import SAMPLES
from storage.core.db import Database
from storage.core.schema import Explanation, Run
from storage.records import record_store
from tests.pipeline_data import fill_layer, uncached_spec
from tests.stored import store_features
from tests.test_explainer import FEATURE, last_user_message, run_explain


def _record(label: str, peak: float, sample: str, data_split: str = "train") -> ActivationRecord:
    return ActivationRecord([f" {label}", " x"], [peak, 0.0], sample=sample, data_split=data_split, label=label)


# Three top records, three quantile bins of three, a firing and a quiet random record, and held-out records that
# outrank everything (the explainer never sees them).
RECORDS = FeatureRecords(FEATURE, [
    _record("top0", 9.0, "top"), _record("top1", 8.0, "top"), _record("top2", 7.0, "top"),
    *[_record(f"q{b}_{i}", b + 1 + i / 10, f"quantile:{b}") for b in range(3) for i in range(3)],
    _record("rand_fires", 0.5, "random"), _record("rand_quiet", 0.0, "random"),
    _record("valid_top", 50.0, "top", "valid"), _record("test_q", 50.0, "quantile:2", "test"),
])


def chosen(sample: str, n: int, seed: int = 0, feature: FeatureRecords = RECORDS) -> list[str]:
    return [r.label for r in rank_records(feature, polarity="positive", max_records=n, sample=sample,
                                          seed=seed).records]


def test_top_shows_only_top_records_highest_first_even_when_there_are_fewer_than_asked():
    assert chosen("top", 2) == ["top0", "top1"]
    assert chosen("top", 20) == ["top0", "top1", "top2"]  # not padded with the highest quantile records


def test_quantiles_take_the_same_number_from_each_bin():
    labels = chosen("quantiles", 6)
    assert all(label.startswith("q") for label in labels) and len(labels) == 6
    assert sorted(label[1] for label in labels) == ["0", "0", "1", "1", "2", "2"]
    # a remainder goes to the highest bins; a short bin leaves its turns to the others
    assert sorted(label[1] for label in chosen("quantiles", 4)) == ["0", "1", "2", "2"]
    assert len(chosen("quantiles", 20)) == 9


def test_random_draws_from_every_firing_train_record_and_the_seed_decides_which():
    draws = {tuple(chosen("random", 4, seed)) for seed in range(10)}
    assert len(draws) > 1  # the seed changes the draw ...
    assert all(tuple(chosen("random", 4, seed)) in draws for seed in range(10))  # ... and a seed repeats it
    seen = {label for draw in draws for label in draw}
    assert "rand_fires" in chosen("random", 20) and not seen & {"rand_quiet", "valid_top", "test_q"}


def test_the_draw_differs_per_feature_under_one_seed():
    other = FeatureRecords(FeatureId("gemma-3-270m", 6, "mlp_neuron", 7), RECORDS.records)
    assert any(chosen("quantiles", 3, seed) != chosen("quantiles", 3, seed, other) for seed in range(10))


def test_mixed_is_half_the_highest_top_records_and_half_quantiles():
    labels = chosen("mixed", 5, seed=3)
    assert labels[:2] == ["top0", "top1"]
    assert sorted(label[1] for label in labels[2:]) == ["0", "1", "2"]
    assert chosen("mixed", 5, seed=3) == labels


@pytest.mark.parametrize("sample", ["top", "quantiles", "random", "mixed"])
def test_records_are_ordered_by_peak_and_the_first_shown_is_the_ten(sample):
    ranked = rank_records(RECORDS, polarity="positive", max_records=4, sample=sample, seed=1)
    peaks = [max(s) for s in ranked.signed]
    assert peaks == sorted(peaks, reverse=True) and ranked.max_activation == peaks[0]
    assert scale(ranked)[0][1][0] == 10


def test_an_unknown_sample_is_an_error_naming_the_choices():
    with pytest.raises(ValueError, match="'best' is not one of top, quantiles, random, mixed"):
        rank_records(RECORDS, polarity="positive", max_records=4, sample="best")


def test_the_prompt_shows_the_sample_and_names_it_in_its_version(fake_openai):
    seen = last_user_message(fake_openai)
    (result,), _ = run_explain(fake_openai, RECORDS, sample="quantiles", sample_seed=5, max_records=3, n_few_shot=0)
    user = seen[0]["messages"][-1]["content"]
    assert " q2_" in user and " q0_" in user and " top0" not in user
    assert result.prompt_version == "token-activation-pairs/v2+quantiles"
    assert (result.params["explainer_sample"], result.params["sample_seed"]) == ("quantiles", 5)
    top_line = f" {result.params['records_shown'][0]}\t10\n"
    assert top_line in user


def _add_quantile_records(db: Database, n_features: int) -> None:
    with db.session() as s, s.begin():
        for index in range(n_features):
            feature = store_features(s, [FeatureId("tiny-model", 6, "mlp_neuron", index)])[0]
            record_store.add_records(s, feature, [
                ActivationRecord([" the", " quantilebird"], [0.0, 1.0 + b], sample=f"quantile:{b}", data_split="train")
                for b in range(2)])


def test_cli_each_sample_is_its_own_configuration_and_does_not_resume_as_another(fake_openai, db, db_url):
    fill_layer(db, 2)
    _add_quantile_records(db, 2)
    explainer = uncached_spec()

    def cli(*args: str):
        result = CliRunner().invoke(main, ["explain", "--model", "tiny-model", "--layer", "6", "--explainer",
                                           explainer, "--simulator", "logprob:openai:fake", "--no-shuffled-baseline",
                                           "--db", db_url, *args])
        assert result.exit_code == 0, result.output
        return result.output

    seen = last_user_message(fake_openai)

    def prompts() -> list[str]:  # the explainer's (chat) requests; the simulator's are completions
        return [json.dumps(body["messages"]) for body in seen if "messages" in body]

    assert "2 done" in cli()
    assert len(prompts()) == 2 and not any("quantilebird" in p for p in prompts())
    assert "2 done" in cli("--explainer-sample", "quantiles")  # not skipped as already explained
    assert len(prompts()) == 4 and all("quantilebird" in p for p in prompts()[2:])
    assert "2 skipped" in cli("--explainer-sample", "quantiles")
    with db.session() as s:
        assert len(set(s.scalars(select(Explanation.config_hash)))) == 2
        assert sorted(set(s.scalars(select(Explanation.prompt_version)))) == [
            "token-activation-pairs/v2+quantiles", "token-activation-pairs/v2+top"]
        configs = [run.config for run in s.scalars(select(Run).order_by(Run.id))]
    assert [c["explainer_sample"] for c in configs] == ["top", "quantiles", "quantiles"]
    assert configs[0]["config_hash"] != configs[1]["config_hash"] == configs[2]["config_hash"]


def test_every_prompt_version_fits_its_column():
    column_type = Explanation.__table__.c.prompt_version.type
    assert isinstance(column_type, String) and column_type.length is not None
    limit = column_type.length
    versions = [prompt_version(fmt, evidence, sample)
                for fmt in PROMPT_VERSIONS if fmt != "auto" for evidence in EVIDENCE_CHOICES for sample in SAMPLES]
    assert len(set(versions)) == len(versions) and max(map(len, versions)) <= limit
