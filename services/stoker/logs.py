"""structlog configured for JSON lines with context bound through contextvars.

Every line passes `redact_secrets` just before it is rendered: values under credential
keys, credential shapes in any text (the rendered traceback included) and the secret
values this process read from its settings are masked (stoker.core.redaction). Records of
the standard library's `logging` (uvicorn, botocore, librdkafka, ...) go through the same
processors, so no library prints around the redaction.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from stoker.core.redaction import is_secret_key, redact, redact_text

_PLAIN = (str, int, float, bool, type(None))


def _redacted(key: str, value: Any) -> Any:
    if is_secret_key(key) and value not in (None, "") and not isinstance(value, bool | int | float):
        return redact({key: value})[key]
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, dict | list | tuple):
        return redact(value)
    # Rendered as the renderers would (repr), then cleaned: an object's repr may quote a URL.
    return redact_text(repr(value))


def redact_secrets(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: every value of the event with secrets masked."""
    for key, value in list(event_dict.items()):
        event_dict[key] = _redacted(key, value)
    return event_dict


class _StderrHandler(logging.Handler):
    """Writes to whatever `sys.stderr` is at the time (commands run in-process swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:
            self.handleError(record)


def configure_logging(level: str = "INFO", *, json: bool = True) -> None:
    """One call at process start. JSON to stderr by default; console rendering for humans."""
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            timestamper,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            redact_secrets,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        # Not cached: a cached logger keeps the stream it first wrote to, and commands run
        # in-process (the CLI's tests) hand it streams that close afterwards.
        cache_logger_on_first_use=False,
    )
    handler = _StderrHandler()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.stdlib.add_log_level,
                structlog.stdlib.add_logger_name,
                timestamper,
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                redact_secrets,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _StderrHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger
