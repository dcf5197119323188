"""What the simulator gets wrong on purpose, and how long its jobs take.

All durations are simulated seconds; `speedup` says how many of them pass per wall-clock
second, so a "10-minute" job with speedup 600 ends after one real second.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator


class DurationSpec(BaseModel):
    """How long the training phase of a job lasts, in simulated seconds.

    kind "fixed": `seconds`; "uniform": drawn from `low_s`..`high_s`; "instant": the job
    is Completed (or Failed) as soon as it is created.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["fixed", "uniform", "instant"] = "fixed"
    seconds: float = Field(default=600.0, ge=0)
    low_s: float = Field(default=60.0, ge=0)
    high_s: float = Field(default=600.0, ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> DurationSpec:
        if self.kind == "uniform" and self.high_s < self.low_s:
            raise ValueError(f"high_s ({self.high_s}) must be >= low_s ({self.low_s})")
        return self


class FaultConfig(BaseModel):
    """Fault injection and timing for the SageMaker-API simulator."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = Field(default=0, description="same seed and job name: same fate")
    speedup: float = Field(default=1.0, gt=0, description="simulated seconds per wall second")
    duration: DurationSpec = Field(default_factory=DurationSpec)
    startup_s: float = Field(
        default=30.0, ge=0, description="provisioning before training starts (simulated s)"
    )
    stop_s: float = Field(default=5.0, ge=0, description="Stopping -> Stopped (simulated s)")
    instance_quota: dict[str, int] = Field(
        default_factory=dict,
        description="instances of a type that may run at once; above: ResourceLimitExceeded",
    )
    default_instance_quota: int | None = Field(
        default=None, ge=0, description="quota for types not in instance_quota (None: none)"
    )
    capacity_error_rate: float = Field(
        default=0.0, ge=0, le=1, description="share of jobs failing with CapacityError"
    )
    capacity_error_rate_by_instance_type: dict[str, float] = Field(default_factory=dict)
    algorithm_error_rate: float = Field(
        default=0.0, ge=0, le=1, description="share of jobs failing with AlgorithmError"
    )
    internal_error_rate: float = Field(
        default=0.0, ge=0, le=1, description="share of requests answered with HTTP 500"
    )
    throttle_rps: float | None = Field(
        default=None, gt=0, description="requests/s over all operations; above: throttled"
    )
    throttle_rps_by_operation: dict[str, float] = Field(
        default_factory=dict, description="a separate rate per operation name"
    )
    throttle_burst: int | None = Field(
        default=None, ge=1, description="requests allowed at once (default: one second's worth)"
    )
    region: str = "us-east-1"
    account_id: str = Field(default="123456789012", pattern=r"^\d{12}$")

    @model_validator(mode="after")
    def _valid_maps(self) -> FaultConfig:
        for instance_type, quota in self.instance_quota.items():
            if quota < 0:
                raise ValueError(f"instance_quota[{instance_type!r}] must be >= 0, got {quota}")
        for instance_type, rate in self.capacity_error_rate_by_instance_type.items():
            if not 0 <= rate <= 1:
                raise ValueError(
                    f"capacity_error_rate_by_instance_type[{instance_type!r}] must be within "
                    f"0..1, got {rate}"
                )
        for operation, rps in self.throttle_rps_by_operation.items():
            if rps <= 0:
                raise ValueError(f"throttle_rps_by_operation[{operation!r}] must be > 0, got {rps}")
        if self.capacity_error_rate + self.algorithm_error_rate > 1:
            raise ValueError(
                "capacity_error_rate + algorithm_error_rate must be <= 1, got "
                f"{self.capacity_error_rate} + {self.algorithm_error_rate}"
            )
        return self

    def quota(self, instance_type: str) -> int | None:
        return self.instance_quota.get(instance_type, self.default_instance_quota)

    def capacity_rate(self, instance_type: str) -> float:
        return self.capacity_error_rate_by_instance_type.get(
            instance_type, self.capacity_error_rate
        )

    @classmethod
    def from_file(cls, path: Path) -> FaultConfig:
        """Read a JSON or YAML file (chosen by suffix; YAML is a superset of JSON)."""
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        return cls.model_validate(data or {})
