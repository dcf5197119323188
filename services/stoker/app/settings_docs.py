"""The settings reference (`docs/settings.md`), rendered from the settings classes.

Each setting's name, environment variable, type, default and meaning come from its field:
the meaning is the field's description, so the reference changes with the code, and a test
keeps the file equal to what `stoker settings docs` writes.
"""

from __future__ import annotations

import json
import types
import typing
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

from stoker.app.aws_lambda.host import LambdaSettings
from stoker.inference.config import InferenceSettings
from stoker.notifier.config import NotifySettings
from stoker.settings import Settings

SECTIONS: tuple[tuple[str, type[BaseSettings], str], ...] = (
    (
        "Services",
        Settings,
        "Every process reads these: the bus and the store, AWS, the training backend, the "
        "launcher, the monitor, retries and the API.",
    ),
    (
        "Notifier",
        NotifySettings,
        "Read by the notifier ([notifications.md](notifications.md) says how it works).",
    ),
    (
        "Inference",
        InferenceSettings,
        "Read by the inference router and the duplicate stream ([router.md](router.md)).",
    ),
    ("Lambda", LambdaSettings, "Read by the Lambda handlers only ([deploy.md](deploy.md))."),
)

HEADER = """# Settings

Generated from the settings classes by `stoker settings docs`; a test fails when this file
and the code disagree, so edit a field's description in the code and run the command again.

Every setting is an environment variable (names are not case-sensitive). Lists and maps are
JSON. A value that does not fit stops the process at start with an error naming the setting.
"""

_SIMPLE = {
    bool: "true | false",
    int: "integer",
    float: "number",
    str: "text",
    Path: "path",
    SecretStr: "secret text",
}
_CONTAINERS = {list: "JSON list", tuple: "JSON list", dict: "JSON object"}


def render_settings_reference() -> str:
    """The whole of docs/settings.md."""
    parts = [HEADER]
    for title, cls, intro in SECTIONS:
        prefix = str(cls.model_config.get("env_prefix", ""))
        parts.append(
            f"\n## {title} (`{prefix}*`)\n\n{intro}\nClass: `{cls.__module__}.{cls.__name__}`.\n"
        )
        parts.append("\n| variable | type | default | meaning |\n|---|---|---|---|\n")
        for name, field in cls.model_fields.items():
            row = (
                f"`{prefix}{name.upper()}`",
                type_text(field),
                default_text(field),
                field.description or "",
            )
            parts.append("| " + " | ".join(_cell(text) for text in row) + " |\n")
    return "".join(parts)


def undocumented() -> list[str]:
    """Settings without a description (the reference would leave their meaning out)."""
    return [
        f"{cls.model_config.get('env_prefix', '')}{name.upper()}"
        for _, cls, _ in SECTIONS
        for name, field in cls.model_fields.items()
        if not field.description
    ]


def type_text(field: FieldInfo) -> str:
    text = _annotation_text(field.annotation)
    bounds = [
        f"{symbol} {value}"
        for meta in field.metadata
        for attr, symbol in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="))
        if (value := getattr(meta, attr, None)) is not None
    ]
    return f"{text}, {', '.join(bounds)}" if bounds else text


def default_text(field: FieldInfo) -> str:
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "unset"
    if value == "":
        return "empty"
    if isinstance(value, Enum):
        return f"`{value.value}`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, list | dict | tuple):
        return f"`{json.dumps(value)}`"
    return f"`{value}`"


def _annotation_text(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        present = [_annotation_text(a) for a in args if a is not type(None)]
        return " or ".join(present) + (" (or unset)" if type(None) in args else "")
    if origin is typing.Literal:
        return " | ".join(str(a) for a in args)
    if origin in _CONTAINERS:
        return _CONTAINERS[origin]
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return " | ".join(str(member.value) for member in annotation)
    simple = _SIMPLE.get(annotation)
    return simple if simple is not None else str(getattr(annotation, "__name__", annotation))


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
