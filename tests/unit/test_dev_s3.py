"""`stoker dev s3`: an S3-compatible server the sagemaker SDK can upload to, stopped by
Ctrl-C (SIGINT)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import botocore.session

from tests.support.waiting import wait_until_blocking


def test_dev_s3_serves_s3_until_interrupted() -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "stoker.cli.main", "dev", "s3", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline().strip()
        assert first.startswith("export AWS_ENDPOINT_URL_S3=http://127.0.0.1:")
        url = first.split("=", 1)[1]
        s3 = botocore.session.get_session().create_client(
            "s3",
            endpoint_url=url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        s3.create_bucket(Bucket="sdk")
        s3.put_object(Bucket="sdk", Key="code/train.py", Body=b"print(1)")
        assert s3.get_object(Bucket="sdk", Key="code/train.py")["Body"].read() == b"print(1)"
        process.send_signal(signal.SIGINT)
        wait_until_blocking(lambda: process.poll() is not None, timeout_s=20)
        assert process.returncode == 0
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        if process.stdout is not None:
            process.stdout.close()
