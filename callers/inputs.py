"""Checks for values people type into files and flags: short excerpts for error text, names of
environment variables (never their values), and target URLs."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

MAX_EXCERPT = 40  # characters of a bad value that an error line may show
MAX_ENV_NAME = 100
MAX_URL = 2048
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def excerpt(value: Any, limit: int = MAX_EXCERPT) -> str:
    """repr(value), cut to about `limit` characters: an error line never carries a whole value
    (a multi-megabyte one would drown the message)."""
    if isinstance(value, str) and len(value) > 4 * limit:
        value = value[: 2 * limit]  # repr of a huge string is never built
    elif isinstance(value, list | tuple | dict | set) and len(value) > limit:
        return f"<{type(value).__name__} of {len(value)} items>"
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - a value whose repr fails is shown by its type
        text = f"<{type(value).__name__}>"
    text = text.replace("\n", "\\n").replace("\r", "\\r")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_env_name(value: str) -> str:
    """A field that names an environment variable holds a name, never a value; a pasted token or
    password fails here, and is not repeated in the message (it may be a secret)."""
    if len(value) > MAX_ENV_NAME or not _ENV_NAME.fullmatch(value):
        raise ValueError("expected the NAME of an environment variable (letters, digits and _, "
                         "like AGENT_TOKEN) that holds the value, not the value itself")
    return value


def check_url(url: str, schemes: tuple[str, ...], what: str) -> str:
    """url with one of `schemes`, a host and, if given, a port of 1-65535; ValueError otherwise
    (showing at most an excerpt of the URL)."""
    wanted = " or ".join(s + "://" for s in schemes)
    if not url.strip():
        raise ValueError(f"url is empty: {what} expects a {wanted} URL")
    shown = excerpt(url)
    if len(url) > MAX_URL:
        raise ValueError(f"url {shown}: longer than {MAX_URL} characters")
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in schemes:
        raise ValueError(f"url {shown}: {what} expects a {wanted} URL")
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unbalanced '[' of an IPv6 host
        raise ValueError(f"url {shown}: not a valid URL") from None
    if not parts.hostname or len(parts.hostname) > 253:
        raise ValueError(f"url {shown}: no host (expected {scheme}://HOST[:PORT]/...)")
    try:
        port = parts.port
    except ValueError:  # not a number, or beyond 65535
        port = -1
    if port is not None and not 0 < port < 65536:
        given = parts.netloc.rsplit(":", 1)[-1]
        raise ValueError(f"url {shown}: port must be a number from 1 to 65535, got "
                         f"{excerpt(given)}")
    return url
