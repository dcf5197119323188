"""Training backends: local processes (the embedded default) and SageMaker (`aws` extra).

`SageMakerBackend` lives in `stoker.adapters.training.sagemaker` and is imported from there,
so the embedded default never needs aiobotocore.
"""

from stoker.adapters.training.local import LocalProcessBackend
from stoker.core.naming import training_job_name

__all__ = ["LocalProcessBackend", "training_job_name"]
