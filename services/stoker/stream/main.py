"""The app built from STOKER_* settings: what `faust -A stoker.stream.main worker` and
`stoker router stream` run. The only module of the stream that reads settings."""

from __future__ import annotations

from functools import partial

import faust

from stoker.app.auth import router_authentication
from stoker.app.inference_registry import load_models
from stoker.app.runtime import kafka_security
from stoker.settings import Settings, load_settings
from stoker.stream.app import build_app
from stoker.stream.config import StreamSettings
from stoker.stream.state import DuplicateApp


def default_app(
    settings: Settings | None = None, stream: StreamSettings | None = None
) -> DuplicateApp:
    settings = settings or load_settings()
    stream = stream or StreamSettings()
    auth = router_authentication(settings)
    return build_app(
        stream,
        partial(load_models, stream.backend, models=("duplicate",)),
        broker=settings.kafka_bootstrap,
        authenticator=auth.authenticator,
        security=kafka_security(settings),
        resources=auth.resources,
    )


def run_worker(built: DuplicateApp, *, log_level: str = "warning") -> None:
    """Run a Faust worker of `built` in this process until SIGTERM or SIGINT."""
    worker = faust.Worker(built.app, loglevel=log_level)
    worker.execute_from_commandline()


built = default_app()
app = built.app
