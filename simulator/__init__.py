"""Simulators: explanation + token sequences -> expected activation (0..10) per token (see base.py)."""

from simulator.base import MAX_VALUE, SequenceSimulation, SimulationError, Simulator, expected_value
from simulator.calibration import LinearCalibration
from simulator.factory import SPEC_HELP, make_simulator, prompt_version

__all__ = ["MAX_VALUE", "LinearCalibration", "SPEC_HELP", "SequenceSimulation", "SimulationError", "Simulator",
           "expected_value", "make_simulator", "prompt_version"]
