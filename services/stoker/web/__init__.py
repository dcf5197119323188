"""What every HTTP app of stoker shares: bearer authentication and per-credential rate limits
as a FastAPI dependency, and the answers to their refusals (401, 403, 429, 503)."""

from stoker.web.auth import BearerAuth, NoCredential, install_refusals, refusal_headers

__all__ = ["BearerAuth", "NoCredential", "install_refusals", "refusal_headers"]
