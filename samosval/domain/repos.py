"""Repository URLs and login lists: small pure helpers shared by requests and hooks."""
from __future__ import annotations

import re

_SCP_LIKE = re.compile(r"^(?:[\w.+-]+@)?(?P<host>[\w.-]+):(?P<path>(?!//)[^\s]+)$")
_URL = re.compile(r"^(?P<scheme>https?|ssh|git)://(?:[^@/\s]+@)?(?P<host>[\w.-]+)(?::\d+)?/(?P<path>[^\s]+)$",
                  re.IGNORECASE)


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


def split_logins(value: str | None) -> list[str]:
    """Split the spec's comma-separated collaborator string into unique logins, in order."""
    seen: list[str] = []
    for part in (value or "").replace(";", ",").split(","):
        login = part.strip().lower()
        if login and login not in seen:
            seen.append(login)
    return seen
