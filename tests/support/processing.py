"""A CreateProcessingJob request that splits a CSV folder by a key column with the shipped
`split_by_key.py`, as the processing tests submit it (alone, or as a pipeline's step)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stoker import training_scripts

SPLIT_SCRIPT = Path(training_scripts.__file__).parent / "split_by_key.py"
INPUT = "/opt/ml/processing/input/data"
OUTPUT = "/opt/ml/processing/output/split"


def split_request(
    python: str, source: str, output: Any, *, key: str = "customer_id"
) -> dict[str, Any]:
    """Split the CSVs under `source` by `key` into `output` (a folder, or a pipeline's
    expression for one), running the script with the interpreter `python`."""
    return {
        "RoleArn": "arn:aws:iam::123456789012:role/processing",
        "AppSpecification": {
            "ImageUri": "stoker-local",
            "ContainerEntrypoint": [python, str(SPLIT_SCRIPT)],
            "ContainerArguments": [*("--input", INPUT), *("--output", OUTPUT), *("--key", key)],
        },
        "ProcessingInputs": [
            {
                "InputName": "data",
                "S3Input": {
                    "S3Uri": source,
                    "LocalPath": INPUT,
                    "S3DataType": "S3Prefix",
                    "S3InputMode": "File",
                },
            }
        ],
        "ProcessingOutputConfig": {
            "Outputs": [
                {
                    "OutputName": "split",
                    "S3Output": {"S3Uri": output, "LocalPath": OUTPUT, "S3UploadMode": "EndOfJob"},
                }
            ]
        },
        "ProcessingResources": {
            "ClusterConfig": {
                "InstanceType": "ml.m5.large",
                "InstanceCount": 1,
                "VolumeSizeInGB": 1,
            }
        },
    }
