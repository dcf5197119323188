"""What a scientist submits. `training` is a SageMaker CreateTrainingJob request, unchanged;
a job of kind `processing` carries a CreateProcessingJob request in `processing` instead."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from stoker.core.job_kind import JobKind
from stoker.core.retry import RetryPolicyOverrides
from stoker.core.spec_limits import (
    MAX_FALLBACKS,
    MAX_INSTANCE_TYPE_CHARS,
    MAX_NOTIFY_TARGETS,
    training_problems,
)

JOB_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9\-_.]{0,127}$"


SECRET_REF_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"


class SlackTarget(BaseModel):
    """A Slack message to a channel (bot token) or to the team's webhook named by secret_ref."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["slack"] = "slack"
    channel: str | None = Field(
        default=None, max_length=80, description="for chat.postMessage with a bot token"
    )
    secret_ref: str | None = Field(
        default=None,
        pattern=SECRET_REF_PATTERN,
        description="name of the team secret holding the incoming-webhook URL",
    )
    webhook_url: HttpUrl | None = Field(
        default=None,
        description="a raw incoming-webhook URL: refused in job specs except for loopback "
        "URLs in development (STOKER_NOTIFY_ALLOW_LOOPBACK); use secret_ref",
    )

    @model_validator(mode="after")
    def _one_destination(self) -> SlackTarget:
        given = [self.channel, self.secret_ref, self.webhook_url]
        if sum(value is not None for value in given) != 1:
            raise ValueError("a slack target needs exactly one of channel, secret_ref, webhook_url")
        return self


class EmailTarget(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["email"] = "email"
    address: str = Field(max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class WebhookTarget(BaseModel):
    """A signed JSON POST to the URL of the team secret named by secret_ref (never in a spec)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["webhook"] = "webhook"
    secret_ref: str | None = Field(
        default=None,
        pattern=SECRET_REF_PATTERN,
        description="name of the team secret holding the URL and the signing secret",
    )
    url: HttpUrl | None = Field(
        default=None,
        description="a raw URL, sent unsigned: refused in job specs except for loopback URLs "
        "in development (STOKER_NOTIFY_ALLOW_LOOPBACK); use secret_ref",
    )

    @model_validator(mode="after")
    def _one_destination(self) -> WebhookTarget:
        if (self.secret_ref is None) == (self.url is None):
            raise ValueError("a webhook target needs exactly one of secret_ref, url")
        return self


NotificationTarget = SlackTarget | EmailTarget | WebhookTarget


class JobSpec(BaseModel):
    """A training job submission."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    job_id: str | None = Field(
        default=None,
        pattern=JOB_ID_PATTERN,
        description="optional; the same id submitted twice is one job",
    )
    owner: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description="optional: the owner is the caller the API authenticated; if given it "
        "must be that caller's name. Required on the submissions topic, where no token names "
        "the submitter",
    )
    priority: int = Field(default=0, ge=-100, le=100, description="higher launches first")
    notify: list[NotificationTarget] = Field(default_factory=list, max_length=MAX_NOTIFY_TARGETS)
    retry: RetryPolicyOverrides | None = None
    instance_type_fallbacks: list[
        Annotated[str, Field(min_length=1, max_length=MAX_INSTANCE_TYPE_CHARS)]
    ] = Field(
        default_factory=list,
        max_length=MAX_FALLBACKS,
        description="tried in order when capacity is short",
    )
    kind: JobKind | None = Field(
        default=None,
        description="training (when left out) runs `training`, a CreateTrainingJob request; "
        "processing runs `processing`, a CreateProcessingJob request",
    )
    training: dict[str, Any] | None = Field(
        default=None,
        description="a CreateTrainingJob request with the SageMaker API's field names "
        "(jobs of kind training)",
    )
    processing: dict[str, Any] | None = Field(
        default=None,
        description="a CreateProcessingJob request with the SageMaker API's field names "
        "(jobs of kind processing)",
    )

    @property
    def job_kind(self) -> JobKind:
        return self.kind or JobKind.TRAINING

    @property
    def request(self) -> dict[str, Any]:
        """The SageMaker request of the job's kind."""
        request = self.training if self.job_kind is JobKind.TRAINING else self.processing
        assert request is not None  # the validator below makes sure
        return request

    @property
    def instance_type(self) -> str:
        if self.job_kind is JobKind.TRAINING:
            return str(self.request["ResourceConfig"]["InstanceType"])
        return str(self.request["ProcessingResources"]["ClusterConfig"]["InstanceType"])

    @model_validator(mode="after")
    def _request_of_its_kind(self) -> JobSpec:
        kind = self.job_kind
        given = self.training if kind is JobKind.TRAINING else self.processing
        other = self.processing if kind is JobKind.TRAINING else self.training
        if given is None:
            raise ValidationError.from_exception_data(
                "JobSpec",
                [
                    InitErrorDetails(
                        type=PydanticCustomError(
                            "missing", "Field required for a job of kind {kind}", {"kind": kind}
                        ),
                        loc=(kind.request_field,),
                        input=None,
                    )
                ],
            )
        if other is not None:
            field = JobKind.PROCESSING if kind is JobKind.TRAINING else JobKind.TRAINING
            raise ValidationError.from_exception_data(
                "JobSpec",
                [
                    InitErrorDetails(
                        type=PydanticCustomError(
                            "extra",
                            "a job of kind {kind} takes no {field} request",
                            {"kind": kind.value, "field": field.value},
                        ),
                        loc=(field.request_field,),
                        input=None,
                    )
                ],
            )
        return self

    @field_validator("training")
    @classmethod
    def _training_has_essentials(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return value
        missing = [
            name
            for name in ("AlgorithmSpecification", "ResourceConfig")
            if not isinstance(value.get(name), dict)
        ]
        if missing:
            raise ValueError(f"missing CreateTrainingJob field(s): {', '.join(missing)}")
        if not value["ResourceConfig"].get("InstanceType"):
            raise ValueError("ResourceConfig.InstanceType is required")
        return value

    @field_validator("processing")
    @classmethod
    def _processing_has_essentials(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return value
        missing = [
            name
            for name in ("AppSpecification", "ProcessingResources")
            if not isinstance(value.get(name), dict)
        ]
        if missing:
            raise ValueError(f"missing CreateProcessingJob field(s): {', '.join(missing)}")
        cluster = value["ProcessingResources"].get("ClusterConfig")
        if not isinstance(cluster, dict) or not cluster.get("InstanceType"):
            raise ValueError("ProcessingResources.ClusterConfig.InstanceType is required")
        return value

    @field_validator("training", "processing")
    @classmethod
    def _request_within_limits(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return value
        problems = training_problems(value)
        if problems:
            # Raised as a ValidationError so that each problem keeps its own location
            # (training.HyperParameters.lr) instead of all of them reading "training".
            raise ValidationError.from_exception_data(
                "request",
                [
                    InitErrorDetails(
                        type=PydanticCustomError("too_large", "{problem}", {"problem": message}),
                        loc=loc,
                        input=None,
                    )
                    for loc, message in problems
                ],
            )
        return value
