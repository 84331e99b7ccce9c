"""Bearer tokens with roles. A token is `<id>.<secret>`: the id finds the row, only the sha256 of
the secret is stored, and the comparison is constant-time."""
from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy.orm import Session

from dreamops.db import ApiToken

ROLES = ("engineer", "robot", "viewer")
# what each role may do; engineers may do everything
PERMISSIONS = {
    "engineer": {"read", "train", "deploy", "robot"},
    "robot": {"robot"},
    "viewer": {"read"},
}


class AuthError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


@dataclass(frozen=True)
class Principal:
    token_id: str
    name: str
    role: str

    def require(self, permission: str) -> None:
        if permission not in PERMISSIONS[self.role]:
            raise AuthError(403, f"role {self.role!r} may not {permission} (token {self.name!r})")


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_token(session: Session, name: str, role: str) -> str:
    """Store a new token and return it; it is shown once and cannot be recovered."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")
    secret = secrets.token_urlsafe(32)
    row = ApiToken(name=name, role=role, secret_hash=_digest(secret))
    session.add(row)
    session.commit()
    return f"{row.id}.{secret}"


def authenticate(session: Session, authorization: str | None) -> Principal:
    if not authorization:
        raise AuthError(401, "missing bearer token (Authorization: Bearer <token>)")
    scheme, _, token = authorization.partition(" ")
    token_id, _, secret = token.strip().partition(".")
    if scheme.lower() != "bearer" or not token_id or not secret:
        raise AuthError(401, "malformed Authorization header; expected 'Bearer <token>'")
    row = session.get(ApiToken, token_id)
    # compare even when the id is unknown, so timing does not tell which ids exist
    expected = row.secret_hash if row is not None else _digest("unknown-token")
    if not hmac.compare_digest(expected, _digest(secret)) or row is None or row.revoked:
        raise AuthError(401, "invalid or revoked token")
    return Principal(row.id, row.name, row.role)
