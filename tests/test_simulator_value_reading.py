"""The way simulators read values 0..10, and the version of the logprob simulators' prompt, are part of every
stored simulation's configuration, so simulations read before "10" was read from "1" "0", or made with the prompt
that showed every few-shot value, never count as the same work as those made now."""

from __future__ import annotations

from click.testing import CliRunner
from sqlalchemy import select

from autointerp.cli import main
from scorer import simulation_config
from simulator.base import VALUE_READING
from simulator.prompts import PROMPT_VERSION
from storage.core import repository as repo
from storage.core.schema import Run, Simulation
from tests.pipeline_data import fill_layer

LAYER = ["--model", "tiny-model", "--layer", "6"]


def test_every_stored_simulation_names_the_value_reading(fake_openai, db_url, db):
    fill_layer(db, 2)
    for args in (["explain", *LAYER, "--explainer", "openai:fake", "--simulator", "logprob:openai:fake"],
                 ["rescore", *LAYER, "--simulator", "logprob:openai:other"]):
        result = CliRunner().invoke(main, [*args, "--db", db_url])
        assert result.exit_code == 0, result.output
    with db.session() as s:
        own = s.execute(select(Simulation.simulator, Simulation.feature_id, Simulation.config_hash)
                        .where(Simulation.role == "own")).all()
        rescore = s.scalars(select(Run.config).where(Run.kind == "rescore")).one()
    assert {simulator for simulator, _, _ in own} == {"logprob:openai:fake", "logprob:openai:other"}
    for simulator, feature_id, chash in own:  # the configuration the simulation is stored (deduplicated) under
        config = {"simulator": simulator, "split": "test", "value_reading": VALUE_READING,
                  "prompt_version": PROMPT_VERSION, "samples": ["top", "random", "quantile"]}
        assert chash == repo.config_hash({"config": config, "role": "own", "feature": feature_id})
    assert rescore["simulation_config"]["value_reading"] == VALUE_READING
    assert rescore["simulation_config"]["prompt_version"] == PROMPT_VERSION == 2


def test_only_logprob_simulations_name_the_prompt_version():
    """Version 1 (every few-shot value shown) stored no version; embedding and json: simulators fill in no
    such prompt, so their stored work stays the same."""
    before = {"simulator": "logprob:local:gemma-3-270m", "split": "test", "value_reading": VALUE_READING,
              "samples": ["top", "random", "quantile"]}
    now = simulation_config("logprob:local:gemma-3-270m")
    assert now == {**before, "prompt_version": 2} and repo.config_hash(now) != repo.config_hash(before)
    for spec in ("embedding", "json:openai:gpt-4o-mini"):
        assert "prompt_version" not in simulation_config(spec)
