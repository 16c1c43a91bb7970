"""Why a destination could not be reached, in words an operator can act on.

"connection failed" says nothing: a refused connection (nothing listens on that port, or a
firewall rejects us), an unknown host name (DNS), a TLS failure, a timeout (a firewall that
drops packets, a stalled link) and an HTTP status each call for another fix. ``classify``
walks the chain of a requests exception (requests wraps urllib3, which wraps the socket
error) to the socket error that says which it was.
"""

from __future__ import annotations

import errno
import http.client
import socket
import ssl
from dataclasses import dataclass

# Each cause: what it means, and what to check.
CAUSES = {
    "refused": "connection refused: nothing listens on that address and port, or a firewall rejects us",
    "dns": "host name not found (DNS): check the destination URL and the machine's resolver",
    "tls": "TLS failed: the server's certificate is not trusted or names another host (transport.ca_bundle)",
    "timeout": "no answer in time: a firewall dropping our packets, a proxy or a stalled link",
    "unreachable": "network unreachable: no route to the host (routing, VPN, proxy settings)",
    "reset": "the connection was closed or reset by the other side (a proxy, a server restarting)",
    "http": "the server answered with an HTTP error status",
    "other": "the connection failed",
}


@dataclass(frozen=True)
class Cause:
    """One named cause (a key of ``CAUSES``) and the words for it."""

    kind: str
    words: str


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc``, its causes and contexts, and the exceptions urllib3 keeps in ``reason`` or args."""
    out: list[BaseException] = []
    todo = [exc]
    while todo and len(out) < 32:
        e = todo.pop(0)
        if any(e is seen for seen in out):
            continue
        out.append(e)
        todo.extend(x for x in (e.__cause__, e.__context__, getattr(e, "reason", None)) if isinstance(x, BaseException))
        todo.extend(a for a in getattr(e, "args", ()) if isinstance(a, BaseException))
    return out


def classify(exc: BaseException) -> Cause:
    """The cause of a connection-level failure (a requests/urllib3/socket exception)."""
    chain = _chain(exc)
    names = {type(e).__name__ for e in chain}
    if any(isinstance(e, ssl.SSLError) for e in chain) or "SSLError" in names:
        return Cause("tls", CAUSES["tls"])
    if any(isinstance(e, socket.gaierror) for e in chain) or "NameResolutionError" in names:
        return Cause("dns", CAUSES["dns"])
    if any(isinstance(e, ConnectionRefusedError) for e in chain):
        return Cause("refused", CAUSES["refused"])
    if any(isinstance(e, OSError) and e.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH) for e in chain):
        return Cause("unreachable", CAUSES["unreachable"])
    if any(isinstance(e, (TimeoutError, socket.timeout)) for e in chain) or names & {
            "Timeout", "ConnectTimeout", "ReadTimeout", "ConnectTimeoutError", "ReadTimeoutError"}:
        return Cause("timeout", CAUSES["timeout"])
    if any(isinstance(e, (ConnectionResetError, ConnectionAbortedError, BrokenPipeError,
                          http.client.RemoteDisconnected)) for e in chain) or names & {
            "ProtocolError", "ChunkedEncodingError"}:
        return Cause("reset", CAUSES["reset"])
    return Cause("other", CAUSES["other"])


def http_status(code: int) -> Cause:
    """An HTTP error status, with its standard phrase."""
    try:
        phrase = http.client.responses[code]
    except KeyError:
        phrase = "unknown status"
    return Cause("http", f"HTTP {code} {phrase}")
