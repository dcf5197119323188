"""Builds the multi-model endpoint from a prefix and options: the object store the prefix
names (a local folder, or S3 through aiobotocore), the fleet and its HTTP app."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from stoker.adapters.objects.local import LocalFolderStore
from stoker.api.endpoints import create_app
from stoker.app.auth import Authentication
from stoker.core.ratelimit import RateLimiter
from stoker.inference.fleet import FleetConfig, ModelFleet
from stoker.ports.objects import ObjectStore
from stoker.settings import Settings


def build_object_store(
    prefix: str, settings: Settings, *, endpoint_url: str | None = None
) -> ObjectStore:
    """`s3://bucket/prefix/` is S3 (the `aws` extra); anything else is a local folder."""
    if prefix.startswith("s3://"):
        from stoker.adapters.aws import settings_config
        from stoker.adapters.objects.s3 import S3Store

        return S3Store(
            prefix,
            region=settings.aws_region,
            endpoint_url=endpoint_url,
            config=settings_config(settings),
        )
    return LocalFolderStore(Path(prefix.removeprefix("file://")))


def build_endpoint(
    store: ObjectStore,
    config: FleetConfig,
    *,
    endpoint_name: str,
    auth: Authentication | None,
    rate_limiter: RateLimiter | None = None,
) -> FastAPI:
    fleet = ModelFleet(store, config)
    return create_app(
        fleet,
        endpoint_name=endpoint_name,
        authenticator=auth.authenticator if auth else None,
        rate_limiter=rate_limiter,
        resources=auth.resources if auth else (),
    )
