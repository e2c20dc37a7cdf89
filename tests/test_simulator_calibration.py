"""Linear calibration: fitted on a calibration split only, applied to the scored records."""

from __future__ import annotations

import asyncio

import pytest

from simulator import LinearCalibration, SequenceSimulation, SimulationError, Simulator, simulate_calibrated


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


def test_calibrated_simulation_refuses_scored_records_in_the_calibration_split():
    sim = LengthSimulator()
    calib_tokens, calib_acts = [["a", " bb"], [" cccc"]], [[0.5, 1.0], [2.0]]
    sims, cal = asyncio.run(simulate_calibrated(sim, "long words", calib_tokens, calib_acts, [[" dd", "e"]]))
    assert cal.slope == pytest.approx(0.5) and sims[0].expected_activations == pytest.approx([1.0, 0.5])
    with pytest.raises(SimulationError, match="both the calibration split and the scored records"):
        asyncio.run(simulate_calibrated(sim, "long words", calib_tokens, calib_acts, [[" cccc"]]))
    with pytest.raises(SimulationError, match="anti-correlates"):
        LinearCalibration.fit([[3.0, 1.0]], [[1.0, 2.0]])
    with pytest.raises(SimulationError, match="constant"):
        LinearCalibration.fit([[0.0, 0.0]], [[1.0, 2.0]])
