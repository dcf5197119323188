"""S3 for the fleet's training tests: moto's server on a free loopback port, a client for
it, and per-customer CSVs of the energy data set uploaded under a prefix."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import boto3
from moto.server import ThreadedMotoServer

from stoker.training_scripts import energy_data

FLEET_BUCKET = "stoker-fleet-train"
"""The bucket `moto_s3` makes and `upload_customers` writes to."""


def s3_client(endpoint: str) -> Any:
    """A client for moto's S3 with credentials botocore signs with (moto takes any)."""
    return boto3.client(
        "s3",
        region_name="us-east-1",
        endpoint_url=endpoint,
        aws_access_key_id="stoker-local",
        aws_secret_access_key="stoker-local",
    )


@contextmanager
def moto_s3() -> Iterator[str]:
    """moto's S3 on a free loopback port with `FLEET_BUCKET` made; yields its endpoint."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        s3_client(endpoint).create_bucket(Bucket=FLEET_BUCKET)
        yield endpoint
    finally:
        server.stop()


def upload_customers(endpoint: str, prefix: str, count: int) -> list[str]:
    """`count` customers' CSVs (40 rows each) under
    s3://FLEET_BUCKET/<prefix>/{customer}/data.csv; returns the customer ids."""
    frame = energy_data.generate(
        customers=count,
        rows_per_customer=40,
        start=datetime(2021, 1, 1),
        end=datetime(2023, 1, 1),
        seed=11,
    )
    client = s3_client(endpoint)
    for customer, rows in frame.groupby("customer_id"):
        client.put_object(
            Bucket=FLEET_BUCKET,
            Key=f"{prefix}/{customer}/data.csv",
            Body=rows.to_csv(index=False).encode(),
        )
    return [str(c) for c in range(count)]
