"""Shared fixtures. Integration fixtures point at real Kafka and DynamoDB Local."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """Bootstrap servers of a real Kafka broker."""
    return os.environ.get("STOKER_KAFKA_BOOTSTRAP", "127.0.0.1:9092")


@pytest.fixture(scope="session")
def dynamodb_endpoint() -> str:
    """Endpoint URL of a real DynamoDB Local."""
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "stoker-local")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "stoker-local")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    return os.environ.get("STOKER_DYNAMODB_ENDPOINT", "http://127.0.0.1:8000")
