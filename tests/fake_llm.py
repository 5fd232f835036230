"""A local OpenAI-compatible chat server on loopback (aiohttp, SSE streaming) for LLM tests."""

from __future__ import annotations

import asyncio
import contextlib
import json

import pytest
from aiohttp import web


class FakeLLM:
    """POST /v1/chat/completions, scripted per request: ("stream", [deltas]) | ("status", code,
    body) | ("sleep", seconds). A request without stream: true gets the deltas joined as one
    chat.completion."""

    def __init__(self) -> None:
        self.script: list[tuple] = []
        self.requests: list[dict] = []
        self.stop = asyncio.Event()
        self.url = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append({"headers": dict(request.headers), "body": body})
        step = self.script.pop(0) if self.script else ("stream", ["OK."])
        if step[0] == "status":
            return web.json_response({"error": {"message": step[2]}}, status=step[1])
        if step[0] == "sleep":
            try:
                await asyncio.wait_for(self.stop.wait(), step[1])
            except TimeoutError:
                pass
            step = ("stream", ["Too late."])
            if request.transport is None or request.transport.is_closing():
                return web.Response(status=499)  # the client gave up waiting, as it should
        if not body.get("stream"):
            return web.json_response({
                "id": "c1", "object": "chat.completion", "created": 0, "model": body["model"],
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": "".join(step[1])}}]})
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for i, delta in enumerate([*step[1], None]):
            chunk = {"id": "c1", "object": "chat.completion.chunk", "created": 0,
                     "model": body["model"],
                     "choices": [{"index": 0,
                                  "delta": ({"role": "assistant"} if i == 0 else {})
                                  | ({"content": delta} if delta is not None else {}),
                                  "finish_reason": None if delta is not None else "stop"}]}
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response


class ScriptedFailures:
    """Base of a loopback service that fails on purpose: `fail` holds ("status", code) or
    ("sleep", seconds) steps, one per request; `requests` is what each request carried."""

    def __init__(self) -> None:
        self.fail: list[tuple] = []
        self.requests: list[dict] = []
        self.url = ""

    async def failure(self, echoed: str = "") -> web.Response | None:
        """This request's scripted error (its body echoes `echoed`, which a client must never
        repeat), after its scripted sleep, or None."""
        step = self.fail.pop(0) if self.fail else None
        if step and step[0] == "status":
            return web.json_response({"error": {"message": f"boom {echoed}"}}, status=step[1])
        if step and step[0] == "sleep":
            await asyncio.sleep(step[1])
        return None


@contextlib.asynccontextmanager
async def loopback_v1(app: web.Application, shutdown_timeout: float = 1.0):
    """Serve app on a free 127.0.0.1 port for the block; yields its /v1 base URL."""
    runner = web.AppRunner(app, shutdown_timeout=shutdown_timeout)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/v1"
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def serving(fake: FakeLLM):
    """Serve fake on a free 127.0.0.1 port (fake.url is its /v1 base) for the block."""
    app = web.Application()
    app.router.add_post("/v1/chat/completions", fake.handle)
    async with loopback_v1(app) as fake.url:
        try:
            yield fake
        finally:
            fake.stop.set()


@pytest.fixture
async def llm():
    async with serving(FakeLLM()) as fake:
        yield fake
