"""The simulated content digest of an image: pure, so migrations can use it too."""

from __future__ import annotations

import hashlib


def image_digest(image_tag: str, image_id: int | None, stored: str | None = None) -> str:
    """The image's own digest when its build recorded one; otherwise a stable stand-in,
    the SHA-256 of the tag and the image id (the same image always gets the same one)."""
    if stored:
        return stored
    return "sha256:" + hashlib.sha256(f"{image_tag}#{image_id}".encode()).hexdigest()
