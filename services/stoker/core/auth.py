"""Who is calling: principals, roles and what each role may do. Pure: no token is read here.

A principal comes from a verified credential (a stoker token or an OIDC/JWT); the job's
owner and team always come from it, never from a request body.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from stoker.core.errors import StokerError

DEFAULT_TEAM = "default"
"""The team of work with no team of its own: jobs stored before teams existed, settings and
policy sections that name none."""

TEAM_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,63}$"
"""A team name: letters, digits, '.', '_' and '-', at most 64 characters. Never contains
'|' or '#', which the stores use to join key parts."""


class Role(StrEnum):
    VIEWER = "viewer"
    """Reads its team's jobs, events and pages."""
    SUBMITTER = "submitter"
    """A viewer that also submits and stops its team's jobs."""
    ADMIN = "admin"
    """Sees and acts on every team's work; manages tokens and policy."""


@dataclass(frozen=True, slots=True)
class Principal:
    """The verified caller of one request."""

    subject: str
    """Who: the owner recorded on the jobs this principal submits."""
    team: str
    """Whose work it may see: its own team's (every team's for an admin)."""
    role: Role
    credential_id: str
    """The token's id or the JWT's `jti`/subject: what rate limits and logs name (never
    the secret itself)."""

    def may_read(self, team: str) -> bool:
        return self.role is Role.ADMIN or team == self.team

    def may_write(self, team: str) -> bool:
        return self.role is not Role.VIEWER and self.may_read(team)


class Unauthenticated(StokerError):
    """No credential, or one that is unknown, revoked, expired or badly signed (401).

    The message never contains the credential."""


class Forbidden(StokerError):
    """A known principal asked for what its role does not allow (403)."""


class UnrecognisedCredential(Unauthenticated):
    """The credential is not of this authenticator's kind (a stoker token handed to the JWT
    authenticator). A chain then reports another authenticator's reason, which says more."""
