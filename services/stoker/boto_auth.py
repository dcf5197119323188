"""A stoker bearer token on boto3 and botocore clients, for the SageMaker operations stoker
serves (`stoker.api.sagemaker`).

stoker's API takes a bearer token, not an AWS signature. `use_bearer_token` registers a
botocore event hook that sets `Authorization: Bearer <token>` on every SageMaker request
after signing (so it replaces a signature the client may have made); `sagemaker_client`
makes a client that signs nothing and carries the token, so no AWS credentials are needed.
"""

from __future__ import annotations

from typing import Any, Protocol

import botocore.session
from botocore import UNSIGNED
from botocore.config import Config


class _HasEvents(Protocol):
    """A botocore session, a boto3 session (`.events`) or a client's `meta.events`."""

    def register(self, event_name: str, handler: Any, unique_id: str | None = ...) -> None: ...


EVENT = "before-send.sagemaker"


def use_bearer_token(events: _HasEvents, token: str, *, event: str = EVENT) -> None:
    """Send `token` on every SageMaker request made through `events`: pass a client's
    `client.meta.events`, or a boto3 `Session().events` before its clients are made.
    `event` widens or narrows which requests: a client's own `"before-send"` covers every
    request of that one client (a `sagemaker-runtime` client, say), and a session's default
    keeps the token off its other services' requests (S3 uploads, STS)."""
    header = f"Bearer {token}"

    def add_token(request: Any, **_: Any) -> None:
        # before-send handlers must return None: a value would stand in for the response.
        request.headers["Authorization"] = header

    events.register(event, add_token, unique_id=f"stoker-bearer-{id(events)}")


def sagemaker_client(endpoint_url: str, token: str, *, region: str = "us-east-1") -> Any:
    """A botocore SageMaker client (what boto3.client makes) on stoker's API at
    `endpoint_url`, carrying `token`."""
    client = botocore.session.get_session().create_client(
        "sagemaker",
        endpoint_url=endpoint_url,
        region_name=region,
        config=Config(signature_version=UNSIGNED, retries={"mode": "standard"}),
    )
    use_bearer_token(client.meta.events, token)
    return client
