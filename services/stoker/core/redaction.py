"""Secrets as they may appear in logs, events, dead letters and API answers: recognisable,
never usable. Pure: no I/O.

Three rules work together:
- a value under a key that names a credential (`token`, `secret`, `password`,
  `Authorization`, `api_key`, `webhook_url`, ...) is replaced whole; a key that only refers
  to a secret (`secret_ref`, `credential_id`) or counts tokens (`max_tokens`) is not one;
- text is searched for credential shapes: stoker tokens (`stk_...`), Slack tokens
  (`xoxb-...`), `Bearer ...`/`Basic ...`, JSON Web Tokens, AWS secret access keys, user
  and password in a URL, secret query parameters, Slack incoming-webhook URLs, and
  `password=...`-style pairs;
- values registered with `remember_secrets` (what the services read from their secret
  settings) are replaced wherever they appear, whatever their shape.

`redact` walks any JSON-like value; `redact_text` cleans one string. Both are idempotent.
"""

from __future__ import annotations

import functools
import itertools
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator

MASK = "[redacted]"

STOKER_TOKEN_PREFIX = "stk_"
"""Every stoker API token starts with this (`stk_<12 hex id>_<secret>`), so a leaked one is
recognised anywhere. The id names the token (listings and logs show it) and is kept."""

# Words that make a key name a credential, matched against the key's words
# (`AWS_SECRET_ACCESS_KEY` -> aws, secret, access, key).
_SECRET_WORDS = frozenset(
    {
        "password",
        "passwd",
        "passphrase",
        "pwd",
        "secret",
        "secrets",
        "token",
        "authorization",
        "apikey",
        "privatekey",
        "credential",
        "credentials",
        "cookie",
        "dsn",
    }
)
_SECRET_PAIRS = frozenset(
    {("api", "key"), ("access", "key"), ("private", "key"), ("webhook", "url"), ("hook", "url")}
)
# A last word that makes the key about a secret rather than the secret itself.
_NOT_SECRET_LAST = frozenset(
    {"ref", "refs", "id", "ids", "name", "names", "type", "kind", "count", "file", "path"}
)
# Query parameters that carry credentials in URLs (pre-signed URLs, SAS, OAuth codes).
_SECRET_QUERY_WORDS = _SECRET_WORDS | {"sig", "signature", "key", "code", "auth"}

_WORD = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")


def key_words(name: str) -> list[str]:
    """The words of a key name, lower case: `webhookUrl` -> webhook, url."""
    return [w.lower() for w in _WORD.findall(name)]


@functools.lru_cache(maxsize=4096)
def is_secret_key(name: str) -> bool:
    """Whether a value under the key `name` is a credential."""
    words = key_words(name)
    if not words or words[-1] in _NOT_SECRET_LAST:
        return False
    if any(w in _SECRET_WORDS for w in words):
        return True
    return any(pair in _SECRET_PAIRS for pair in itertools.pairwise(words))


def _is_secret_param(name: str) -> bool:
    words = key_words(name)
    if not words or words[-1] in _NOT_SECRET_LAST:
        return False
    return any(w in _SECRET_QUERY_WORDS for w in words) or is_secret_key(name)


_URL_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^\s/@?#\"'<>]+@")
_SLACK_HOOK = re.compile(
    r"(?P<base>https?://hooks\.slack\.com/)(?:services|workflows|triggers)/[^\s\"'<>]+"
)
_QUERY_PARAM = re.compile(r"(?P<lead>[?&;])(?P<name>[^=&\s#\"'<>]{1,64})=(?P<value>[^&\s#\"'<>]+)")
_STOKER_TOKEN_WITH_ID = re.compile(
    rf"\b{STOKER_TOKEN_PREFIX}(?P<id>[0-9a-f]{{12}})_[A-Za-z0-9_\-]+"
)
# A run already ending in a mask (`stk_<id>_[redacted]`) is left alone.
_STOKER_TOKEN = re.compile(rf"\b{STOKER_TOKEN_PREFIX}(?![A-Za-z0-9_\-]*\[)[A-Za-z0-9_\-]{{8,}}")
_SLACK_TOKEN = re.compile(r"\b(?P<kind>xox[abprse]|xapp)-[A-Za-z0-9\-]{8,}")
_AUTH_SCHEME = re.compile(
    r"\b(?P<scheme>[Bb]earer|[Bb]asic|BEARER|BASIC)\s+[A-Za-z0-9._~+/=\-]{6,}(?![\[A-Za-z0-9._~+/=\-])"
)
_JWT = re.compile(r"\beyJ[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]*")
# A run of exactly 40 base64 characters; `_aws_sub` masks it when its mix of cases and
# digits is that of an AWS secret access key.
_AWS_SECRET = re.compile(r"(?<![A-Za-z0-9/+=])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])")
_KEY_HINTS = (
    "pass",
    "pwd",
    "secret",
    "token",
    "auth",
    "key",
    "credential",
    "cookie",
    "dsn",
    "hook",
)
"""Substrings of every credential key name: text without any has no pair to mask."""
_PAIR_KEY = re.compile(r"\b(?P<key>[A-Za-z][A-Za-z0-9_.\-]{0,63})[\"']?\s*[:=]\s*[\"']?")
_PAIR_VALUE = re.compile(r"[^\s\"',;&}\])]+")


def _query_sub(match: re.Match[str]) -> str:
    if match.group("value") == MASK or not _is_secret_param(match.group("name")):
        return match.group(0)
    return f"{match.group('lead')}{match.group('name')}={MASK}"


def _mask_pairs(text: str) -> str:
    """`key=value` and `"key": "value"` pairs in free text, masked when the key names a
    credential. Keys are found without consuming their values, so `failed: password=x`
    finds `password` after `failed`."""
    out: list[str] = []
    done = 0
    for key in _PAIR_KEY.finditer(text):
        if key.start() < done or not is_secret_key(key.group("key")):
            continue
        value = _PAIR_VALUE.match(text, key.end())
        if value is None:
            continue
        shown = value.group(0)
        # Already masked (`stk_[redacted]`), an auth scheme whose credential is masked
        # after it, or a URL's `https://` (its secrets have their own rules).
        if MASK[:-1] in shown or shown.lower() in ("bearer", "basic") or shown.startswith("//"):
            continue
        out += [text[done : key.end()], MASK]
        done = value.end()
    out.append(text[done:])
    return "".join(out)


MIN_REMEMBERED_LENGTH = 6
"""Shorter values are not remembered: masking every `abc` in every log line hides more
than it protects."""


class _Remembered:
    """The process's secret values, longest first; replaced whole under a lock, read
    without one (a tuple is swapped atomically)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.values: tuple[str, ...] = ()

    def add(self, found: set[str]) -> None:
        with self._lock:
            merged = set(self.values) | {v for v in found if len(v) >= MIN_REMEMBERED_LENGTH}
            self.values = tuple(sorted(merged, key=len, reverse=True))

    def clear(self) -> None:
        with self._lock:
            self.values = ()


_REMEMBERED = _Remembered()


def remember_secrets(values: Iterable[str]) -> None:
    """Add configured secret values that must be masked wherever they appear.

    Process-wide: every redaction in the process (logs, dead letters, API answers) masks
    them from now on. A URL also registers its path, query and long path segments."""
    found: set[str] = set()
    for value in values:
        if not value:
            continue
        found.add(value)
        if "://" in value:
            found.update(url_secret_parts(value))
    _REMEMBERED.add(found)


def remembered_secrets() -> tuple[str, ...]:
    return _REMEMBERED.values


def forget_secrets() -> None:
    """Drop every remembered value (tests reset the process-wide state with this)."""
    _REMEMBERED.clear()


def url_secret_parts(url: str) -> list[str]:
    """The parts of a URL that are credentials when the URL is one: the whole, its path and
    query, and path segments long enough to be tokens (where Slack and most webhook
    providers put them)."""
    parts = urlsplit(url)
    found = [url, url.rstrip("/")]
    if parts.path.strip("/"):
        found.append(parts.path)
        found += [seg for seg in parts.path.split("/") if len(seg) >= 8]
    if parts.query:
        found.append(parts.query)
    if parts.password:
        found.append(parts.password)
    return found


def _aws_sub(match: re.Match[str]) -> str:
    # Upper case, lower case and a digit: the shape of an AWS secret access key. A SHA-1
    # in hex (lower case only) is left alone.
    run = match.group(0)
    mixed = any(c.isupper() for c in run) and any(c.islower() for c in run)
    return MASK if mixed and any(c.isdigit() for c in run) else run


def redact_text(text: str) -> str:
    """`text` with remembered secrets and every credential shape masked.

    Each rule runs only when a cheap substring test says it may apply: reasons and log
    messages are redacted on every event and every line."""
    for secret in _REMEMBERED.values:
        if secret in text:
            text = text.replace(secret, MASK)
    if "://" in text:
        text = _SLACK_HOOK.sub(rf"\g<base>{MASK}", text)
        text = _URL_USERINFO.sub(rf"\g<scheme>{MASK}@", text)
    if "=" in text:
        text = _QUERY_PARAM.sub(_query_sub, text)
    if STOKER_TOKEN_PREFIX in text:
        text = _STOKER_TOKEN_WITH_ID.sub(rf"{STOKER_TOKEN_PREFIX}\g<id>_{MASK}", text)
        text = _STOKER_TOKEN.sub(f"{STOKER_TOKEN_PREFIX}{MASK}", text)
    if "xox" in text or "xapp-" in text:
        text = _SLACK_TOKEN.sub(rf"\g<kind>-{MASK}", text)
    lower = text.lower()
    if "bearer" in lower or "basic" in lower:
        text = _AUTH_SCHEME.sub(rf"\g<scheme> {MASK}", text)
    if "eyJ" in text:
        text = _JWT.sub(MASK, text)
    if len(text) >= 40:
        text = _AWS_SECRET.sub(_aws_sub, text)
    if ("=" in text or ":" in text) and any(hint in lower for hint in _KEY_HINTS):
        text = _mask_pairs(text)
    return text


def mask_url(url: str) -> str:
    """Scheme and host of a URL, the rest masked: `https://hooks.slack.com/[redacted]`."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        port = parts.port
    except ValueError:
        return MASK
    if not parts.scheme or not host:
        return MASK
    where = f"[{host}]" if ":" in host else host
    if port is not None:
        where += f":{port}"
    return f"{parts.scheme}://{where}/{MASK}"


_URL_TARGET_KINDS = frozenset({"webhook", "slack"})
_URL_TARGET_FIELDS = frozenset({"url", "webhook_url"})


def _masked(value: Any) -> Any:
    # Numbers, flags and nulls under a secret-sounding key say nothing about a secret.
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str | bytes) and not value:
        return value
    return MASK


_SCALARS = (bool, int, float)


def redact(value: Any) -> Any:
    """A copy of a JSON-like value (dicts, lists, strings, numbers) with secrets masked.

    A notification target (`{"kind": "webhook", "url": ...}`) keeps only the scheme and host
    of its URL. Values of other types are returned unchanged."""
    if isinstance(value, str):
        return redact_text(value)
    # Plain types before the Mapping test, which is an ABC's and slow: a spec is mostly
    # numbers, nulls, dicts and lists, and answers redact one for every job they show.
    if value is None or isinstance(value, _SCALARS):
        return value
    if isinstance(value, list | tuple):
        return [redact(item) for item in value]
    if isinstance(value, dict | Mapping):
        target = value.get("kind") in _URL_TARGET_KINDS
        out: dict[Any, Any] = {}
        for key, item in value.items():
            if target and key in _URL_TARGET_FIELDS and isinstance(item, str):
                out[key] = mask_url(item)
            elif isinstance(key, str) and is_secret_key(key):
                out[key] = _masked(item)
            else:
                out[key] = redact(item)
        return out
    return value


RedactedText = Annotated[str, AfterValidator(redact_text)]
"""A free-text field (a failure reason) that is redacted whenever it is built or read."""
