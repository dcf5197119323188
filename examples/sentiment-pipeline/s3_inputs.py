"""A step's input as a local path: a path as it is, an `s3://` URI downloaded first.

Through the sagemaker SDK a notebook gets its upstream step's output as an `s3://` URI (a
`NotebookJobStep` writes under its `s3_root_uri`), and reads it from S3 as it would on
SageMaker, with the credentials its environment gives botocore (the job's role there; on one
machine the dev S3 server's, from the policy's `local.s3`). From `pipeline.json` (`stoker
pipelines demo`) it gets a local path. Downloads go to a temporary folder, so they are not
taken for outputs of the step.
"""

from __future__ import annotations

import tempfile
from pathlib import Path


def local_copy(uri: str) -> Path:
    """`uri` as a local path: an object becomes a file, a prefix a folder of its objects."""
    if not uri.startswith("s3://"):
        return Path(uri)
    import boto3  # noqa: PLC0415 - needed only for S3 inputs: the demo passes local paths

    bucket, _, key = uri.removeprefix("s3://").partition("/")
    client = boto3.client("s3")
    root = Path(tempfile.mkdtemp(prefix="s3-input-"))
    found = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key):
        found.extend(item["Key"] for item in page.get("Contents", []))
    if key in found:  # one object
        target = root / Path(key).name
        client.download_file(bucket, key, str(target))
        return target
    prefix = key.rstrip("/") + "/"
    objects = [k for k in found if k.startswith(prefix)]
    if not objects:
        raise FileNotFoundError(f"no object at or under {uri}")
    for name in objects:
        target = root / name.removeprefix(prefix)
        target.parent.mkdir(parents=True, exist_ok=True)
        client.download_file(bucket, name, str(target))
    return root
