"""The way simulators read values 0..10 is part of every stored simulation's configuration, so simulations
read before "10" was read from "1" "0" never count as the same work as those read after."""

from __future__ import annotations

from click.testing import CliRunner
from sqlalchemy import select

from autointerp.cli import main
from simulator.base import VALUE_READING
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
                  "samples": ["top", "random", "quantile"]}
        assert chash == repo.config_hash({"config": config, "role": "own", "feature": feature_id})
    assert rescore["simulation_config"]["value_reading"] == VALUE_READING
