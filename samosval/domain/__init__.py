"""Domain rules shared by HTML routes, JSON routes and the simulation engine.

Modules here take a connection and plain values, never ``request``. Messages
meant for users are English source strings marked with ``N_`` so the
extractor finds them; the view translates them when it renders.
"""
from __future__ import annotations


def N_(message: str) -> str:
    """Mark a string for translation without translating it here."""
    return message


class ValidationError(Exception):
    """Bad input. ``errors`` maps a field name to a message (English source text)."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


class ActionRefused(Exception):
    """An action that the current state does not allow ("already stopped").
    ``message`` is English source text, translated by the view."""

    def __init__(self, message: str, status: int = 409):
        super().__init__(message)
        self.message = message
        self.status = status
