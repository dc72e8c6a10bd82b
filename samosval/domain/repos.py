"""Repository URLs, branch names and login lists: small pure helpers shared by
requests and hooks."""

from __future__ import annotations

import re

MAX_BRANCH_LENGTH = 255
# git check-ref-format: no control characters, space, ~ ^ : ? * [ or backslash.
_REF_FORBIDDEN = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")

_SCP_LIKE = re.compile(r"^(?:[\w.+-]+@)?(?P<host>[\w.-]+):(?P<path>(?!//)[^\s]+)$")
_URL = re.compile(
    r"^(?P<scheme>https?|ssh|git)://(?:[^@/\s]+@)?(?P<host>[\w.-]+)(?::\d+)?/(?P<path>[^\s]+)$", re.IGNORECASE
)


def normalize_repo_url(url: str | None) -> str | None:
    """Reduce a git URL to ``host/path`` so that every way of writing one repository
    compares equal: ``https://github.com/Org/Repo``, ``git@github.com:org/repo.git``
    and ``ssh://git@github.com/org/repo/`` all give ``github.com/org/repo``.

    Hosts and paths are compared case-insensitively (GitHub and GitLab treat them
    so); ``.git`` and trailing slashes are ignored. Returns None for anything that
    is not a recognisable repository URL.
    """
    if not url:
        return None
    url = url.strip()
    match = _URL.match(url) or _SCP_LIKE.match(url)
    if not match:
        return None
    host = match.group("host").lower()
    path = match.group("path").strip("/")
    if path.endswith(".git"):
        path = path[:-4]
    path = path.strip("/").lower()
    if not path:
        return None
    return f"{host}/{path}"


def is_valid_branch_name(name: str | None) -> bool:
    """Whether git accepts ``name`` as a branch (``git check-ref-format --branch``),
    so every branch git can push can be matched: ``fix/issue#42``, ``feature/релиз-2``,
    ``renovate/@types/node`` and ``release+1`` pass; ``a..b``, ``x.lock``, ``-x``,
    ``@``, ``a//b``, a trailing ``/`` or ``.``, spaces and ``~^:?*[\\`` do not."""
    if not isinstance(name, str) or not name or len(name) > MAX_BRANCH_LENGTH:
        return False
    if name == "@" or name.startswith("-") or "@{" in name or ".." in name:
        return False
    if _REF_FORBIDDEN.search(name) or name.endswith(".") or name.endswith("/") or name.startswith("/"):
        return False
    return all(part and not part.startswith(".") and not part.endswith(".lock") for part in name.split("/"))


def split_logins(value: str | None) -> list[str]:
    """Split the spec's comma-separated collaborator string into unique logins, in order."""
    seen: list[str] = []
    for part in (value or "").replace(";", ",").split(","):
        login = part.strip().lower()
        if login and login not in seen:
            seen.append(login)
    return seen
