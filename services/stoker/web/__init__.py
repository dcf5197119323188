"""Pieces every HTTP app of stoker shares (the jobs API, the router): plain ASGI, no web
framework, so any app adds them with one line."""

from stoker.web.body_limit import BodyLimit

__all__ = ["BodyLimit"]
