"""Optional linear calibration: map a simulator's 0..10 expected values onto a feature's activation scale,
fitted on a calibration split. It changes r² and absolute deviation explained (which compare raw values),
not the correlation. Fitting it on the records being scored would leak their answers: it is fitted on a split that
is never scored (the valid split)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from simulator.base import SequenceSimulation, SimulationError


@dataclass(frozen=True)
class LinearCalibration:
    slope: float
    intercept: float

    @classmethod
    def fit(cls, real: Sequence[Sequence[float]], predicted: Sequence[Sequence[float]]) -> LinearCalibration:
        """Least squares of real on predicted over the pooled tokens of the calibration records."""
        x = np.asarray([v for p in predicted for v in p], dtype=np.float64)
        y = np.asarray([v for r in real for v in r], dtype=np.float64)
        if x.size != y.size or x.size < 2:
            raise SimulationError("calibration needs aligned records with at least 2 tokens "
                                  f"(got {x.size} predicted, {y.size} real)")
        if np.ptp(x) == 0 or np.ptp(y) == 0:
            raise SimulationError("calibration split is constant (in real or simulated values): "
                                  "a line cannot be fitted")
        from scipy import stats  # imported here: a second of start-up for every user of the package

        fit = stats.linregress(x, y)
        if fit.slope <= 0:
            raise SimulationError(f"calibration split anti-correlates with the simulation (slope {fit.slope:.3g}); "
                                  "a calibration must not flip the simulator's ranking")
        return cls(float(fit.slope), float(fit.intercept))

    def apply(self, sims: Sequence[SequenceSimulation]) -> list[SequenceSimulation]:
        return [SequenceSimulation(s.tokens, [self.slope * v + self.intercept for v in s.expected_activations],
                                   s.distributions)
                for s in sims]
