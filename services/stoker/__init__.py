"""stoker: fire-and-forget ML training jobs and fast batched inference, driven by events.

The public surface is what `__all__` lists; everything else is internal.
"""

from stoker.client import ApiError, AsyncClient, Client, JobPage, Submitted
from stoker.core.job import JobRecord, JobStatus, Transition
from stoker.core.spec import JobSpec

__all__ = [
    "ApiError",
    "AsyncClient",
    "Client",
    "JobPage",
    "JobRecord",
    "JobSpec",
    "JobStatus",
    "Submitted",
    "Transition",
]
__version__ = "0.1.0"
