"""Sends an `EndpointPlan`'s requests to SageMaker (aiobotocore), each checked first against
botocore's own model of the operation."""

from __future__ import annotations

from typing import Any

from aiobotocore.session import get_session
from botocore.validate import ParamValidator

from stoker.adapters.aws import call, settings_config
from stoker.core.errors import ConfigurationError
from stoker.inference.fleet.deployment import EndpointPlan
from stoker.settings import Settings

_METHODS = {
    "CreateModel": "create_model",
    "CreateEndpointConfig": "create_endpoint_config",
    "CreateEndpoint": "create_endpoint",
}


async def apply(
    plan: EndpointPlan, settings: Settings, *, endpoint_url: str | None = None
) -> list[dict[str, Any]]:
    """Send the plan's requests in order; returns SageMaker's answers. A failure leaves as
    the stoker error of `stoker.adapters.aws.call` (AwsRequestRejected, AwsUnavailable)."""
    answers: list[dict[str, Any]] = []
    async with get_session().create_client(
        "sagemaker",
        region_name=settings.aws_region,
        endpoint_url=endpoint_url,
        config=settings_config(settings),
    ) as client:
        for operation, request in plan.requests():
            shape = client.meta.service_model.operation_model(operation).input_shape
            if shape is None:  # every Create* operation has an input; keeps mypy sure
                raise ConfigurationError(f"{operation}: no input shape in botocore's model")
            report = ParamValidator().validate(request, shape)
            if report.has_errors():
                raise ConfigurationError(f"{operation}: {report.generate_report()}")
            method = getattr(client, _METHODS[operation])

            async def send(method: Any = method, request: dict[str, Any] = request) -> Any:
                return await method(**request)

            answers.append(dict(await call(operation, send)))
    return answers
