"""A SageMaker-API simulator: the real JSON protocol, fault injection and throttling.

Reached by the unmodified aiobotocore client through `endpoint_url`. Run it in-process
(`SimulatorServer`) or as a process: `python -m stoker.simulator --port 8600 --faults f.yaml`.
"""

from stoker.simulator.engine import SimulatedSageMaker, Stats
from stoker.simulator.errors import SimulatorError
from stoker.simulator.faults import DurationSpec, FaultConfig
from stoker.simulator.server import SimulatorServer, build_app

__all__ = [
    "DurationSpec",
    "FaultConfig",
    "SimulatedSageMaker",
    "SimulatorError",
    "SimulatorServer",
    "Stats",
    "build_app",
]
