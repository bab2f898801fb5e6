"""The user roles meterguard knows; the API decides what each may do."""

from __future__ import annotations

import enum


class Role(enum.StrEnum):
    """A user's role, as stored in the alert database."""

    VIEWER = "viewer"
    OPERATOR = "operator"
    CREW = "crew"
    ADMIN = "admin"


#: Every role name, in order of growing rights.
ROLE_NAMES: tuple[str, ...] = tuple(r.value for r in Role)
