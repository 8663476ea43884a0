"""The two ways a reconciliation can fail, mapped to kopf only at the edge (handlers)."""

from __future__ import annotations


class SetupError(Exception):
    """Something the user must fix (a missing Secret, a conflicting writer); retried.

    ``reason`` is the Ready condition's reason, ``message`` says what to do; neither holds
    a credential.
    """

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        self.message = message
        super().__init__(message)


class InvalidSpecError(Exception):
    """The spec cannot be acted on until it is changed; not retried."""
