"""`--calibrate`: fit the simulator's linear calibration on the valid split and score the calibrated test
simulation with the magnitude methods (r², absolute deviation explained), stored beside the raw ones.

The valid split is never scored and never shown to the explainer, so fitting there does not leak the test
answers. A fit that cannot be made (constant values, a simulation that anti-correlates, a failed simulation)
is stored as undefined scores with the reason, never as zeros.
"""

from __future__ import annotations

from collections.abc import Sequence

from scorer.metrics import ScoreValue
from scorer.scored_set import ScoringInput
from scorer.subsets import ScoredRecord, calibration_failed, score_calibrated
from simulator.base import SequenceSimulation, SimulationError, Simulator
from simulator.calibration import LinearCalibration


async def calibrated_scores(simulator: Simulator, explanation: str, valid: ScoringInput, test: ScoringInput,
                            test_simulations: Sequence[SequenceSimulation], *, role: str, seed: int = 0
                            ) -> list[ScoreValue]:
    """Simulate `explanation` on the valid split, fit real ~ slope * simulated + intercept there, and score the
    test simulations mapped through that line."""
    if not valid.records:
        return calibration_failed("no top or random records in the valid split to fit a calibration on", role=role)
    try:
        valid_simulations = await simulator.simulate(explanation, valid.tokens)
        fit = LinearCalibration.fit(valid.real, [s.expected_activations for s in valid_simulations])
    except SimulationError as exc:
        return calibration_failed(f"no calibration fitted on the valid split: {exc.reason}", role=role)
    calibrated = fit.apply(test_simulations)
    records = [ScoredRecord(record.sample, real, sim.expected_activations)
               for record, real, sim in zip(test.records, test.real, calibrated)]
    details = {"calibration": {"slope": fit.slope, "intercept": fit.intercept, "fitted_on": "valid",
                               "n_records": len(valid.records)}}
    return score_calibrated(records, role=role, details=details, seed=seed)
