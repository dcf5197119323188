"""The serverless variant's functions side by side in one test process: one host per
function, as AWS runs one process (or more) per function."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stoker.app.aws_lambda import launch, react
from stoker.app.aws_lambda.host import LambdaHost
from stoker.notifier.config import NotifySettings
from tests.deploy.support import StreamReader

NO_FAILURES = {"batchItemFailures": []}


class LambdaFunctions:
    """The API, the stream's two readers (launch, react) and the monitor."""

    def __init__(self, hosts: Callable[..., LambdaHost], notify: NotifySettings) -> None:
        self.api = hosts(with_backend=False)
        self.launch = hosts()
        self.monitor = hosts()
        self.react = hosts()
        self.notify = notify

    def deliver(self, reader: StreamReader) -> tuple[dict[str, Any], dict[str, Any]]:
        """Hand the stream's new records to both of its readers, each through its filter;
        what each answered."""
        records = reader.new_records()
        launched = launch.handle(self.launch, reader.batch_for("LaunchFunction", records), None)
        reacted = react.handle(
            self.react, reader.batch_for("ReactFunction", records), None, notify=self.notify
        )
        return launched, reacted

    def deliver_cleanly(self, reader: StreamReader) -> None:
        """`deliver`, with no record of the batch failed by either reader."""
        assert self.deliver(reader) == (NO_FAILURES, NO_FAILURES)
