"""train_customers, with each artifact it completes counted, and one host SIGKILLed once.

    python counting_train.py <training_scripts folder> [train_customers arguments...]

Run by the local backend as a job's entrypoint. It imports train_customers and
forecast_model from the given folder (as SageMaker runs a script beside its modules) and
wraps two of their functions:
- each artifact the script completes (`write_whole` of a `.tar.gz`) leaves one marker file
  in $FIT_MARKERS (`<artifact>.<pid>.<n>`), so a test counts completed fits per customer;
- on host $KILL_HOST, once it has completed $KILL_AFTER models, the next fit SIGKILLs the
  process in the middle of the fit, once per test ($FIT_MARKERS/killed says it happened).
"""

from __future__ import annotations

import itertools
import os
import signal
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, sys.argv[1])

import forecast_model
import train_customers

MARKERS = Path(os.environ["FIT_MARKERS"])
COUNTER = itertools.count()
real_fit = forecast_model.fit
real_write = train_customers.write_whole
completed: list[str] = []
"""The artifacts this process completed."""


def fit(frame: Any, **options: Any) -> Any:
    host = os.environ.get("SM_CURRENT_HOST")
    if host == os.environ.get("KILL_HOST") and len(completed) >= int(os.environ["KILL_AFTER"]):
        try:
            os.close(os.open(MARKERS / "killed", os.O_WRONLY | os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            pass  # killed once already: this is the retry
        else:
            os.kill(os.getpid(), signal.SIGKILL)
    return real_fit(frame, **options)


def write_whole(data: bytes, dest: Path) -> None:
    real_write(data, dest)
    if dest.name.endswith(".tar.gz"):
        completed.append(dest.name)
        (MARKERS / f"{dest.name}.{os.getpid()}.{next(COUNTER)}").touch()


forecast_model.fit = fit
train_customers.write_whole = write_whole
sys.exit(train_customers.main(sys.argv[2:]))
