"""Builds examples/sentiment-pipeline/pipeline.py's pipeline with the sagemaker SDK and
upserts it to stoker (the SDK compiles the three NotebookJobSteps and uploads the notebooks
to S3; stoker checks the definition). Same environment as pipeline_script.py; prints the
stored definition as JSON."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sentiment-pipeline" / "pipeline.py"


def main() -> None:
    spec = importlib.util.spec_from_file_location("sentiment_pipeline", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    sys.modules["sentiment_pipeline"] = example
    spec.loader.exec_module(example)
    pipeline = example.build(example.session())
    pipeline.upsert(role_arn=example.ROLE)
    print(json.dumps(json.loads(pipeline.describe()["PipelineDefinition"])))


if __name__ == "__main__":
    main()
