"""What an ID may look like: item, bundle and user IDs alike, in URLs, bodies and Redis keys."""

from __future__ import annotations

import re

from coldproxy.errors import InvalidInput

ID_PATTERN = r"^[A-Za-z0-9._:\-]{1,128}$"
ID_RE = re.compile(ID_PATTERN)


def check_id(value: str, field: str = "item_id") -> str:
    """``value`` when it is a valid ID; ``InvalidInput`` (422) naming ``field`` otherwise."""
    if not ID_RE.fullmatch(value or ""):
        raise InvalidInput(f"{field} must match {ID_PATTERN}")
    return value
