"""The reference agent's endpoints: WebRTC signaling (json-offer: POST /offer; WHIP: POST
/whip) and WebSocket media streams (/pcm: raw PCM; /twilio: Twilio Media Streams). Its SIP
listener is reference_agent/sip_media.py."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from dataclasses import replace

from aiohttp import web
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from callers.loopback import is_loopback_url, keep_loopback_candidates, loopback_only
from callers.transport import close_peer_connection
from reference_agent.call import AgentCall, AgentKnobs, SpeechModels
from reference_agent.flows import get_flow
from reference_agent.received_trace import HEADER as TRACEPARENT
from reference_agent.received_trace import parameter_values, record_call_start
from reference_agent.turn_log import TurnLog

log = logging.getLogger(__name__)


class AgentServer:
    """Answers offers with a new AgentCall each; keeps media on loopback when bound there."""

    def __init__(self, models: SpeechModels, knobs: AgentKnobs, host: str = "127.0.0.1",
                 turn_log: TurnLog | None = None) -> None:
        self.models = models
        self.knobs = knobs
        self.turn_log = turn_log
        self.local = is_loopback_url(f"http://{host}/")
        self.calls: dict[str, AgentCall] = {}
        self._background: set[asyncio.Task] = set()
        self.app = web.Application()
        self.app.add_routes(
            [
                web.post("/offer", self.json_offer),
                web.post("/whip", self.whip_offer),
                web.delete("/whip/{call_id}", self.whip_delete),
                web.get("/pcm", self.pcm_ws),
                web.get("/twilio", self.twilio_ws),
                web.get("/health", self.health),
            ]
        )
        self.app.on_shutdown.append(self._close_all)

    def _knobs_for(self, request: web.Request) -> AgentKnobs:
        """The knobs for one call: `?flow=NAME` picks the flow (one agent, every flow); a
        --mishear slot the flow lacks does not apply to it. ValueError for an unknown flow."""
        return self.knobs_for_flow(request.query.get("flow"))

    def knobs_for_flow(self, name: str | None) -> AgentKnobs:
        """The knobs for a call of flow name (None: the agent's own); ValueError if unknown."""
        if not name:
            return self.knobs
        flow = get_flow(name)  # ValueError names the known flows
        return replace(self.knobs, flow=name,
                       mishear=frozenset(self.knobs.mishear) & set(flow.slot_names))

    async def _answer(self, offer_sdp: str, knobs: AgentKnobs | None = None,
                      traceparents: list[str] | tuple[str, ...] = ()) -> tuple[str, str]:
        if self.local:
            offer_sdp = keep_loopback_candidates(offer_sdp)
        # Local: no STUN (candidates come from callers.loopback); else aiortc's default STUN.
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]) if self.local else None)
        call_id = uuid.uuid4().hex[:12]
        call = AgentCall(pc, self.models, knobs or self.knobs, turn_log=self.turn_log,
                         call_id=call_id)
        self.calls[call_id] = call
        record_call_start(self.turn_log, call_id, "webrtc", traceparents)
        with loopback_only(self.local):
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
            await pc.setLocalDescription(await pc.createAnswer())
        call.start()
        forget = asyncio.create_task(self._forget_when_ended(call_id, call))
        self._background.add(forget)
        forget.add_done_callback(self._background.discard)
        return call_id, pc.localDescription.sdp

    async def _forget_when_ended(self, call_id: str, call: AgentCall) -> None:
        await call.ended.wait()
        self.calls.pop(call_id, None)

    async def json_offer(self, request: web.Request) -> web.Response:
        try:
            body = json.loads(await request.text())
            sdp, kind = body["sdp"], body.get("type", "offer")
        except (ValueError, KeyError, TypeError):
            return web.json_response({"error": "expected JSON {sdp, type}"}, status=400)
        if kind != "offer" or not str(sdp).startswith("v=0"):
            return web.json_response({"error": "expected an SDP offer"}, status=400)
        try:
            knobs = self._knobs_for(request)
        except ValueError as e:
            return web.json_response({"error": str(e)[:200]}, status=404)
        call_id, answer = await self._answer(sdp, knobs,
                                             request.headers.getall(TRACEPARENT, []))
        return web.json_response({"sdp": answer, "type": "answer", "call_id": call_id},
                                 headers={"X-Call-Id": call_id})

    async def whip_offer(self, request: web.Request) -> web.Response:
        if request.content_type != "application/sdp":
            return web.Response(status=415, text="expected Content-Type: application/sdp")
        sdp = await request.text()
        if not sdp.startswith("v=0"):
            return web.Response(status=400, text="expected an SDP offer")
        try:
            knobs = self._knobs_for(request)
        except ValueError as e:
            return web.Response(status=404, text=str(e)[:200])
        call_id, answer = await self._answer(sdp, knobs,
                                             request.headers.getall(TRACEPARENT, []))
        return web.Response(
            status=201,
            text=answer,
            content_type="application/sdp",
            headers={"Location": f"/whip/{call_id}", "X-Call-Id": call_id},
        )

    async def pcm_ws(self, request: web.Request) -> web.StreamResponse:
        return await self._websocket(request, "pcm")

    async def twilio_ws(self, request: web.Request) -> web.StreamResponse:
        return await self._websocket(request, "twilio")

    async def _websocket(self, request: web.Request, kind: str) -> web.StreamResponse:
        """One call over a WebSocket media stream, served until either side ends it."""
        from reference_agent.ws_media import WebSocketAgentMedia

        try:
            knobs = self._knobs_for(request)
        except ValueError as e:
            return web.Response(status=404, text=str(e)[:200])
        call_id = uuid.uuid4().hex[:12]
        ws = web.WebSocketResponse(max_msg_size=1 << 22, heartbeat=None)
        ws.headers["X-Call-Id"] = call_id
        await ws.prepare(request)
        media = WebSocketAgentMedia(ws, kind)
        call = AgentCall(media, self.models, knobs, turn_log=self.turn_log, call_id=call_id)
        self.calls[call_id] = call
        headers = request.headers.getall(TRACEPARENT, [])
        started: list[bool] = []

        def call_started(start: dict | None = None) -> None:
            # Twilio's traceparent is a start message parameter (the handshake's header next).
            if not started:
                started.append(True)
                record_call_start(self.turn_log, call_id, kind,
                                  parameter_values((start or {}).get("customParameters")),
                                  headers)

        if kind == "twilio":
            media.on_start = call_started
        else:
            call_started()
        call.start()
        try:
            await media.run()
            await call.ended.wait()
        finally:
            call_started()  # a Twilio stream that never started
            self.calls.pop(call_id, None)
            await call.hang_up()
        return ws

    async def whip_delete(self, request: web.Request) -> web.Response:
        call = self.calls.pop(request.match_info["call_id"], None)
        if call is None:
            return web.Response(status=404, text="no such session (already ended)")
        await call.hang_up()
        return web.Response(status=200)

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "calls": len(self.calls)})

    async def _close_all(self, app: web.Application) -> None:
        await asyncio.gather(
            *(c.media.close() for c in list(self.calls.values())),
            return_exceptions=True,
        )


async def serve(server: AgentServer, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Start listening; returns the runner and the bound port (port 0 picks a free one)."""
    runner = web.AppRunner(server.app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, bound
