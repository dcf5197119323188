"""The base of every event payload, apart from the envelope (stoker.core.events) so that
each area's events can live beside their area and still join the one registry."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict


class EventData(BaseModel):
    """Base of every event payload. Subclasses set TYPE and SCHEMA_NAME."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    TYPE: ClassVar[str]
    SCHEMA_NAME: ClassVar[str]

    def partition_key(self) -> str:
        """Events of one job share a key, so they stay ordered on one partition."""
        job_id = getattr(self, "job_id", None)
        if not isinstance(job_id, str) or not job_id:
            raise NotImplementedError(f"{type(self).__name__} must define partition_key")
        return job_id
