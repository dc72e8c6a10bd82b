"""What a new password must be (NIST SP 800-63B, section 5.1.1.2, in spirit).

Length is what counts: at least 8 characters, and long pass-phrases are welcome
(up to 256). No composition rules (no "one digit and one symbol"). A password
found in a list of the commonest ones, or equal to the username, is refused. The
list is the 30,000 most common passwords shipped with the ``zxcvbn`` package
(its ``passwords`` frequency list, drawn from real leaks), read once on first use.

Every check returns the English source message of the rule that failed (marked
``N_``; the web layer translates it), or None.
"""

from __future__ import annotations

from functools import lru_cache

from . import N_

MIN_LENGTH = 8
MAX_LENGTH = 256  # at least 64 must be allowed (800-63B); long pass-phrases are fine

TOO_SHORT = N_("Too short: at least 8 characters.")
TOO_LONG = N_("Too long: at most 256 characters.")
TOO_COMMON = N_("This password is one of the most common ones; attackers try it first. Choose another.")
SAME_AS_USERNAME = N_("The password must not be the username.")


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    """The commonest passwords, lower-case. Loaded lazily: importing the list costs
    a few megabytes, paid only by the first password change after a start."""
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    return frozenset(word.lower() for word in FREQUENCY_LISTS["passwords"])


def is_common(password: str) -> bool:
    return password.lower() in common_passwords()


def check(password: str, username: str | None = None) -> str | None:
    """Why ``password`` may not be used (for ``username``), or None when it may."""
    password = password or ""
    if len(password) < MIN_LENGTH:
        return TOO_SHORT
    if len(password) > MAX_LENGTH:
        return TOO_LONG
    if username and password.strip().lower() == username.strip().lower():
        return SAME_AS_USERNAME
    if is_common(password):
        return TOO_COMMON
    return None
