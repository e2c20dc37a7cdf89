"""Linear calibration: fitted on the valid split only, applied to the scored (test) records."""

from __future__ import annotations

import asyncio

import pytest

from activations.records import ActivationRecord
from activations.vocab import ScoreRole
from autointerp.workflows.feature_work import ScoringInput
from scorer.calibrated import calibrated_scores
from simulator import LinearCalibration, SequenceSimulation, SimulationError, Simulator


class LengthSimulator(Simulator):
    """A real (if simple) simulator: value = number of characters of the stripped token, capped at 10."""

    spec = "test:length"

    async def simulate(self, explanation, records):
        return [SequenceSimulation(list(t), [float(min(10, len(x.strip()))) for x in t]) for t in records]


def test_fit_recovers_the_line_and_apply_maps_values():
    cal = LinearCalibration.fit([[1.0, 3.0], [5.0]], [[0.0, 1.0], [2.0]])  # real = 2 * predicted + 1
    assert (cal.slope, cal.intercept) == pytest.approx((2.0, 1.0))
    (out,) = cal.apply([SequenceSimulation(["a"], [4.0])])
    assert out.expected_activations == pytest.approx([9.0])


def test_calibrated_scores_fit_on_the_valid_split_and_refuse_a_flipping_or_flat_line():
    sim = LengthSimulator()
    valid_records = [ActivationRecord(["a", " bb"], [0.5, 1.0], sample="top", data_split="valid"),
                     ActivationRecord([" cccc"], [2.0], sample="random", data_split="valid")]
    test_records = [ActivationRecord([" dd", "e"], [1.0, 0.5], sample="top", data_split="test"),
                    ActivationRecord([" fff", "g"], [1.5, 0.5], sample="random", data_split="test")]
    valid = ScoringInput(valid_records, [list(r.activations) for r in valid_records])
    test = ScoringInput(test_records, [list(r.activations) for r in test_records])
    test_simulations = asyncio.run(sim.simulate("long words", test.tokens))
    scores = asyncio.run(calibrated_scores(sim, "long words", valid, test, test_simulations, role=ScoreRole.OWN))
    # real = 0.5 * length on the valid split: the line maps the test simulation onto the real values exactly
    assert scores and all(s.details["calibration"]["slope"] == pytest.approx(0.5) for s in scores)
    assert {s.details["calibration"]["fitted_on"] for s in scores} == {"valid"}
    assert all(s.value == pytest.approx(1.0) for s in scores if s.subset == "top_and_random")
    with pytest.raises(SimulationError, match="anti-correlates"):
        LinearCalibration.fit([[3.0, 1.0]], [[1.0, 2.0]])
    with pytest.raises(SimulationError, match="constant"):
        LinearCalibration.fit([[0.0, 0.0]], [[1.0, 2.0]])
