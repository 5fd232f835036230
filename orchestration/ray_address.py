"""A Ray cluster address (--address or RAY_ADDRESS), checked before anything starts: its form,
then that something answers at host:port. ray.init on an address nobody listens at retries for a
minute or more before it gives up, and then exits the process from inside Ray."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

from callers.errors import ConfigError
from callers.inputs import excerpt

CONNECT_TIMEOUT_S = 3.0
SPECIAL = ("auto", "local")  # Ray's own words: an already running local cluster, a new one


def parse_address(address: str, where: str) -> tuple[str, int] | None:
    """(host, port) of HOST:PORT or ray://HOST:PORT; None for Ray's 'auto' and 'local';
    ConfigError otherwise."""
    text = address.strip()
    if text in SPECIAL:
        return None
    expected = "expected HOST:PORT (the head node's GCS port, e.g. 10.0.0.5:6379), " \
               "ray://HOST:PORT, or auto"
    if not text:
        raise ConfigError(f"{where}: empty address; {expected}")
    scheme, sep, rest = text.partition("://")
    if sep and scheme != "ray":
        raise ConfigError(f"{where} {excerpt(text)}: unknown scheme {excerpt(scheme)}; {expected}")
    try:
        parts = urlsplit("//" + (rest if sep else text))
        port = parts.port
    except ValueError:  # a port that is not a number, or beyond 65535
        port = -1
        parts = None
    if parts is None or not parts.hostname or port is None or not 0 < port < 65536 \
            or parts.path or parts.query:
        raise ConfigError(f"{where} {excerpt(text)}: {expected}")
    return parts.hostname, port


def check_address(address: str | None, where: str,
                  timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """A Ray address that is well formed and accepts a TCP connection within timeout_s; one
    ConfigError line otherwise (None: a local Ray is started, nothing to check)."""
    if address is None:
        return
    target = parse_address(address, where)
    if target is None:
        return
    host, port = target
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except OSError as e:
        why = (f"no answer within {timeout_s:g} s" if isinstance(e, TimeoutError)
               else e.strerror or type(e).__name__)
        raise ConfigError(f"{where} {excerpt(address)}: no Ray cluster answers at "
                          f"{host}:{port} ({why}); is the head node up (ray start --head) "
                          "and the port right?") from None
