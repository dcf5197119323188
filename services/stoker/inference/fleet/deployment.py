"""The SageMaker requests that put a model prefix behind a real multi-model endpoint:
`CreateModel` (`Mode: MultiModel`, `ModelDataUrl` the prefix), `CreateEndpointConfig` and
`CreateEndpoint`. Pure data; `stoker.adapters.endpoint_deploy` sends them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class EndpointPlan:
    """
    name: the endpoint's name; the model is `{name}-model`, the config `{name}-config`.
    prefix: `s3://bucket/models/`, where every `{customer}.tar.gz` is.
    image: the serving container's image URI.
    role_arn: the role SageMaker reads the prefix with.
    """

    name: str
    prefix: str
    image: str
    role_arn: str
    instance_type: str = "ml.c5.xlarge"
    instance_count: int = 1

    def __post_init__(self) -> None:
        if not self.prefix.startswith("s3://"):
            raise ValueError(f"prefix: SageMaker reads models from S3 (got {self.prefix!r})")
        if not self.prefix.endswith("/"):
            raise ValueError(f"prefix: must end with '/' (got {self.prefix!r})")
        if self.instance_count < 1:
            raise ValueError(f"instance_count: must be >= 1 (got {self.instance_count})")

    @property
    def model_name(self) -> str:
        return f"{self.name}-model"

    @property
    def config_name(self) -> str:
        return f"{self.name}-config"

    def requests(self) -> list[tuple[str, dict[str, Any]]]:
        """(operation, request) in the order they must be sent."""
        return [
            (
                "CreateModel",
                {
                    "ModelName": self.model_name,
                    "ExecutionRoleArn": self.role_arn,
                    "PrimaryContainer": {
                        "Image": self.image,
                        "Mode": "MultiModel",
                        "ModelDataUrl": self.prefix,
                    },
                },
            ),
            (
                "CreateEndpointConfig",
                {
                    "EndpointConfigName": self.config_name,
                    "ProductionVariants": [
                        {
                            "VariantName": "AllTraffic",
                            "ModelName": self.model_name,
                            "InitialInstanceCount": self.instance_count,
                            "InstanceType": self.instance_type,
                        }
                    ],
                },
            ),
            (
                "CreateEndpoint",
                {"EndpointName": self.name, "EndpointConfigName": self.config_name},
            ),
        ]
