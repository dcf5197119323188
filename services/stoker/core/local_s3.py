"""The policy's `local.s3` rule: local jobs may reach the S3-compatible dev server.

On SageMaker a notebook or script reads and writes `s3://` with the job's role. A local
process gets a clean environment (no AWS keys, no endpoint: see docs/security.md), so on one
machine it cannot reach the S3 server the SDK and stoker share (`stoker dev s3`). This rule
names that server: when the policy has it, every local process gets
`AWS_ENDPOINT_URL_S3=<endpoint_url>`, the dev server's credentials and a region, and
nothing else. The endpoint must be on loopback (the dev server on this machine), and the
credentials are the rule's own, never read from the service's environment, so the
service's AWS keys cannot reach a job through it. Pure.
"""

from __future__ import annotations

from ipaddress import ip_address
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field, field_validator

DEV_ACCESS_KEY_ID = "testing"
DEV_SECRET_ACCESS_KEY = "testing"
"""What moto's S3 server (`stoker dev s3`) accepts; it checks no signature's key."""
_LOOPBACK_NAMES = {"localhost"}


def _loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


class LocalS3(BaseModel):
    """The S3-compatible dev server local jobs may reach, and the non-secret credentials it
    takes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    endpoint_url: str = Field(
        description="the dev S3 server, on loopback, e.g. http://127.0.0.1:9000 "
        "(what `stoker dev s3` prints as AWS_ENDPOINT_URL_S3)"
    )
    access_key_id: str = Field(default=DEV_ACCESS_KEY_ID, min_length=1)
    secret_access_key: str = Field(
        default=DEV_SECRET_ACCESS_KEY,
        min_length=1,
        description="the dev server's own credential, which it does not check; never an AWS "
        "account's key: every local process sees it",
    )
    region: str = Field(default="us-east-1", min_length=1)

    @field_validator("endpoint_url")
    @classmethod
    def _dev_server(cls, value: str) -> str:
        parsed = urlparse(value)
        if parsed.scheme not in {"http", "https"} or not parsed.hostname:
            raise ValueError(f"{value!r} is not an http(s) URL")
        if not _loopback(parsed.hostname):
            raise ValueError(
                f"{value!r} is not on loopback: local jobs reach only a dev S3 server on this "
                "machine (on AWS a job's role gives it S3)"
            )
        return value.rstrip("/")

    def environment(self) -> dict[str, str]:
        """The variables every local process gets: botocore reads them."""
        return {
            "AWS_ENDPOINT_URL_S3": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_DEFAULT_REGION": self.region,
        }
