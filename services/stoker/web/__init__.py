"""What every HTTP app of stoker shares (the jobs API, the router): bearer authentication and
per-credential rate limits as a FastAPI dependency, the answers to their refusals (401, 403,
429, 503), and plain ASGI pieces any app adds with one line, such as the request body limit
(`stoker.web.body_limit`)."""

from stoker.web.auth import BearerAuth, NoCredential, install_refusals, refusal_headers

__all__ = ["BearerAuth", "NoCredential", "install_refusals", "refusal_headers"]
