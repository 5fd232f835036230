"""An outgoing SIP call over UDP (RFC 3261): the INVITE client transaction with its
retransmissions, provisional responses, digest authentication on 401/407, ACK, CANCEL when
nobody answers, BYE, and the requests the far end sends inside the dialog (BYE, re-INVITE,
INFO, OPTIONS).

Deliberately small: one dialog, no route set (Record-Route is not followed), no forking, no
TCP/TLS. Final failures are CallFailed with a named reason: sip_<code> for a final response,
sip_auth_failed, sip_no_answer, sip_unreachable.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable

from callers.errors import CallFailed
from callers.transports.sip.message import (
    DigestUnsupported,
    SipMessage,
    SipParseError,
    SipUri,
    authorization,
    contact_uri,
    new_branch,
    new_tag,
    parse,
    parse_challenge,
    response,
)

log = logging.getLogger(__name__)

T1_S = 0.5  # RFC 3261 timer T1: the first retransmission interval on UDP
T2_S = 4.0  # the most a non-INVITE request's retransmission interval grows to
MAX_EXCHANGE = 60  # entries kept in the exchange log (a chatty peer cannot grow a record)
USER_AGENT = "callfleet"


class SipSocket(asyncio.DatagramProtocol):
    """A UDP socket connected to the peer: each parsed message goes to on_message; ICMP port
    unreachable (a refused port) to on_refused."""

    def __init__(self, on_message: Callable[[SipMessage], None],
                 on_refused: Callable[[Exception], None]) -> None:
        self.on_message = on_message
        self.on_refused = on_refused
        self.transport: asyncio.DatagramTransport | None = None
        self.bad = 0

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        if not data.strip():
            return  # a keep-alive (CRLF)
        try:
            message = parse(data)
        except SipParseError as e:
            self.bad += 1
            log.info("ignored a datagram that is not SIP: %s", e)
            return
        self.on_message(message)

    def error_received(self, exc: Exception) -> None:
        self.on_refused(exc)

    def send(self, message: SipMessage) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(message.to_bytes())


class OutgoingCall:
    """One SIP dialog that we start with an INVITE.

    on_request(message) is called for each request the peer sends inside the dialog, after
    BYE, INFO and OPTIONS have been answered; for a re-INVITE it must return our SDP (the
    200's body). credentials: (username, password) for digest authentication, or None.
    invite_headers: extra headers of every INVITE we send (a traceparent).
    """

    def __init__(self, uri: SipUri, local_host: str, *,
                 credentials: tuple[str, str] | None = None,
                 on_request: Callable[[SipMessage], str | None] = lambda m: None,
                 from_user: str = USER_AGENT,
                 invite_headers: list[tuple[str, str]] | None = None) -> None:
        self.uri = uri
        self.invite_headers = list(invite_headers or [])  # e.g. the call's traceparent
        self.local_host = local_host
        self.credentials = credentials
        self.on_request = on_request
        self.from_user = from_user
        self.call_id = f"{secrets.token_hex(10)}@{local_host}"
        self.local_tag = new_tag()
        self.remote_tag: str | None = None
        self.remote_target = str(uri)  # the peer's Contact once it answers
        self.cseq = secrets.randbelow(10_000) + 1
        self.exchange: list[str] = []  # "> INVITE", "< 180 INVITE", ... in order
        self.bye_received = asyncio.Event()
        self.established = False
        self._sock = SipSocket(self._on_message, self._on_refused)
        self._pending: dict[str, asyncio.Queue] = {}  # branch -> responses
        self._refused: asyncio.Future | None = None
        self._invite: SipMessage | None = None
        self._ack: SipMessage | None = None

    # --- the socket ---------------------------------------------------------------------

    async def open(self) -> int:
        """Bind to local_host and connect to the peer; returns our SIP port."""
        loop = asyncio.get_running_loop()
        self._refused = loop.create_future()
        await loop.create_datagram_endpoint(lambda: self._sock, local_addr=(self.local_host, 0),
                                            remote_addr=(self.uri.host, self.uri.port))
        return self.port

    @property
    def port(self) -> int:
        transport = self._sock.transport
        return transport.get_extra_info("sockname")[1] if transport else 0

    def _send(self, message: SipMessage) -> None:
        self._log(">", message)
        self._sock.send(message)

    def _log(self, way: str, message: SipMessage) -> None:
        if len(self.exchange) < MAX_EXCHANGE:
            self.exchange.append(f"{way} {message.label()}")

    def _on_refused(self, exc: Exception) -> None:
        if self._refused is not None and not self._refused.done():
            self._refused.set_result(exc)

    def close(self) -> None:
        if self._sock.transport is not None:
            self._sock.transport.close()

    # --- building requests --------------------------------------------------------------

    def _request(self, method: str, *, cseq: int | None = None, uri: str | None = None,
                 branch: str | None = None, body: str = "",
                 extra: list[tuple[str, str]] | None = None) -> SipMessage:
        to = f"<{self.uri}>" + (f";tag={self.remote_tag}" if self.remote_tag else "")
        headers = [
            ("Via", f"SIP/2.0/UDP {self.local_host}:{self.port};branch={branch or new_branch()}"
                    ";rport"),
            ("Max-Forwards", "70"),
            ("From", f"<sip:{self.from_user}@{self.local_host}>;tag={self.local_tag}"),
            ("To", to),
            ("Call-ID", self.call_id),
            ("CSeq", f"{cseq if cseq is not None else self.cseq} {method}"),
            ("User-Agent", USER_AGENT),
        ]
        if method in ("INVITE", "ACK", "BYE") or body:
            headers.append(("Contact", f"<sip:{self.from_user}@{self.local_host}:{self.port}>"))
        if body:
            headers.append(("Content-Type", "application/sdp"))
        return SipMessage(f"{method} {uri or self.remote_target} SIP/2.0",
                          headers + (extra or []), body.encode())

    # --- the INVITE ---------------------------------------------------------------------

    async def invite(self, sdp: str, timeout_s: float) -> SipMessage:
        """Place the call; returns the 200 OK (its body is the answer), ACKed. CallFailed
        with a named reason for any other end."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        auth: list[tuple[str, str]] = []
        while True:
            request = self._request("INVITE", body=sdp, extra=[*self.invite_headers, *auth])
            self._invite = request
            final = await self._invite_transaction(request, deadline)
            if final.status < 300:
                self._established(final)
                return final
            self._ack_failure(request, final)
            if final.status in (401, 407):
                if auth:
                    raise CallFailed("sip_auth_failed",
                                     f"{final.status} {final.reason} after our credentials")
                auth = [self._answer_challenge(final)]
                self.cseq += 1
                continue
            raise CallFailed(f"sip_{final.status}", final.reason)

    def _answer_challenge(self, final: SipMessage) -> tuple[str, str]:
        if self.credentials is None:
            raise CallFailed("sip_auth_failed",
                             f"{final.status} {final.reason}: no credentials configured")
        name = "WWW-Authenticate" if final.status == 401 else "Proxy-Authenticate"
        challenge = parse_challenge(final.header(name) or "")
        if not challenge.get("nonce"):
            raise CallFailed("sip_auth_failed", f"{final.status} without a digest challenge")
        username, password = self.credentials
        try:
            value = authorization(challenge, username=username, password=password,
                                  method="INVITE", uri=str(self.uri))
        except DigestUnsupported as e:
            raise CallFailed("sip_auth_failed", str(e)) from None
        return ("Authorization" if final.status == 401 else "Proxy-Authorization", value)

    async def _invite_transaction(self, request: SipMessage, deadline: float) -> SipMessage:
        """Send request, retransmitting (timer A) until the peer responds; the final
        response, or CallFailed when none comes before deadline."""
        loop = asyncio.get_running_loop()
        branch = _branch(request)
        responses: asyncio.Queue = asyncio.Queue()
        self._pending[branch] = responses
        provisional: SipMessage | None = None
        interval = T1_S
        next_send = loop.time()
        try:
            while True:
                now = loop.time()
                if provisional is None and now >= next_send:
                    self._send(request)
                    next_send, interval = now + interval, interval * 2
                wake = min(deadline, next_send) if provisional is None else deadline
                if now >= deadline:
                    break
                got = await _first(responses.get(), self._refused, wake - now)
                if isinstance(got, Exception):
                    raise CallFailed("sip_unreachable",
                                     f"{self.uri.host}:{self.uri.port}: {got}") from None
                if got is None:
                    continue
                if got.status >= 200:
                    return got
                provisional = got
        finally:
            self._pending.pop(branch, None)
        if provisional is not None:
            self._cancel(request)
            raise CallFailed("sip_no_answer", f"no answer ({provisional.status} "
                             f"{provisional.reason}) within the connect timeout")
        raise CallFailed("sip_no_answer", f"no response from {self.uri.host}:{self.uri.port}")

    def _established(self, final: SipMessage) -> None:
        self.remote_tag = final.tag("To")
        self.remote_target = contact_uri(final.header("Contact") or "") or str(self.uri)
        self._ack = self._request("ACK", cseq=self._invite.cseq[0] if self._invite else None)
        self._send(self._ack)
        self.established = True

    def _ack_failure(self, request: SipMessage, final: SipMessage) -> None:
        """ACK for a non-2xx final response: same branch, To with the response's tag."""
        ack = self._request("ACK", cseq=request.cseq[0], uri=request.uri, branch=_branch(request))
        ack.headers = [(k, final.header("To") or v) if k == "To" else (k, v)
                       for k, v in ack.headers if k != "Contact"]
        self._send(ack)

    def _cancel(self, request: SipMessage) -> None:
        """CANCEL a ringing INVITE (same branch); its 200 and the 487 need no waiting."""
        cancel = self._request("CANCEL", cseq=request.cseq[0], uri=request.uri,
                               branch=_branch(request))
        self._send(cancel)

    # --- hanging up ---------------------------------------------------------------------

    async def bye(self, timeout_s: float = 2.0) -> int | None:
        """Send BYE (retransmitted, timer E) and wait for its final response; the status, or
        None when the peer did not answer in time."""
        if not self.established or self.bye_received.is_set():
            return None
        self.cseq += 1
        request = self._request("BYE", cseq=self.cseq)
        final = await self._non_invite(request, timeout_s)
        self.established = False
        return None if final is None else final.status

    async def request(self, method: str, body: bytes, content_type: str,
                      timeout_s: float = 2.0) -> int | None:
        """A request inside the dialog (INFO, MESSAGE); its final status or None."""
        self.cseq += 1
        request = self._request(method, cseq=self.cseq,
                                extra=[("Content-Type", content_type)])
        request.body = body
        final = await self._non_invite(request, timeout_s)
        return None if final is None else final.status

    async def _non_invite(self, request: SipMessage, timeout_s: float) -> SipMessage | None:
        loop = asyncio.get_running_loop()
        branch = _branch(request)
        responses: asyncio.Queue = asyncio.Queue()
        self._pending[branch] = responses
        deadline = loop.time() + timeout_s
        interval = T1_S
        try:
            while loop.time() < deadline:
                self._send(request)
                wait = min(interval, deadline - loop.time())
                interval = min(interval * 2, T2_S)
                got = await _first(responses.get(), None, wait)
                while got is not None and got.status < 200:
                    got = await _first(responses.get(), None, max(0.0, deadline - loop.time()))
                if got is not None:
                    return got
        finally:
            self._pending.pop(branch, None)
        return None

    # --- what the peer sends ------------------------------------------------------------

    def _on_message(self, message: SipMessage) -> None:
        self._log("<", message)
        if message.call_id != self.call_id:
            if message.is_request and message.method != "ACK":
                self._sock.send(response(message, 481, "Call/Transaction Does Not Exist"))
            return
        if not message.is_request:
            queue = self._pending.get(_branch(message))
            if queue is not None:
                queue.put_nowait(message)
            elif (message.status < 300 and message.method == "INVITE"
                  and self._ack is not None):
                self._send(self._ack)  # the 200 again: our ACK was lost
            return
        method = message.method
        if method == "ACK":
            return
        if method == "BYE":
            self._send(response(message, 200, "OK"))
            self.established = False
            self.bye_received.set()
            self.on_request(message)
        elif method == "INVITE":
            sdp = self.on_request(message)
            if sdp is None:
                self._send(response(message, 488, "Not Acceptable Here"))
                return
            contact = [("Contact", f"<sip:{self.from_user}@{self.local_host}:{self.port}>"),
                       ("Content-Type", "application/sdp")]
            self._send(response(message, 200, "OK", headers=contact, body=sdp.encode()))
        elif method in ("INFO", "OPTIONS", "MESSAGE", "NOTIFY"):
            self._send(response(message, 200, "OK"))
            self.on_request(message)
        elif method == "CANCEL":
            self._send(response(message, 481, "Call/Transaction Does Not Exist"))
        else:
            self._send(response(message, 501, "Not Implemented"))


def _branch(message: SipMessage) -> str:
    via = message.header("Via") or ""
    for part in via.split(";")[1:]:
        key, _, value = part.strip().partition("=")
        if key.lower() == "branch":
            return value
    return ""


async def _first(get, refused: asyncio.Future | None, timeout_s: float):
    """The first of: the awaitable get's result, refused's exception, or None on timeout."""
    task = asyncio.ensure_future(get)
    waiters = {task} | ({refused} if refused is not None else set())
    try:
        done, _ = await asyncio.wait(waiters, timeout=max(0.0, timeout_s),
                                     return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not task.done():
            task.cancel()
    if refused is not None and refused in done:
        return refused.result()
    return task.result() if task in done else None
