"""The multi-model endpoint's HTTP API: SageMaker's container API and runtime route."""

from __future__ import annotations

from stoker.api.endpoints.app import create_app

__all__ = ["create_app"]
