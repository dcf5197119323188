"""What the `served` fixture gives: stoker's API with pipelines on memory stores, served by
uvicorn on a loopback port, for clients that speak HTTP for real (botocore, the CLI)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stoker.adapters.store.memory import MemoryJobStore
from stoker.boto_auth import sagemaker_client
from stoker.core.auth import Role
from stoker.lifecycle.jobs import JobService
from tests.support.auth import mint


@dataclass
class Served:
    url: str
    jobs: JobService
    tokens: MemoryJobStore
    s3_url: str
    """moto's S3 server (PipelineDefinitionS3Location is read from it)."""

    async def client(self, team: str = "search", role: Role = Role.SUBMITTER) -> Any:
        token = await mint(self.tokens, "ana", team, role)
        return sagemaker_client(self.url, token)
