"""What the OpenAI-compatible speech clients (stt_openai, tts_openai in this package) share:
the key read from the variable the config names, one client per process made in its event
loop, and a request that is retried once, each try bounded by timeout_s, before the call fails
with the backend's reason. Failure details say what went wrong, never a response body or the
key."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import openai

from callers.errors import CallFailed, ConfigError
from callers.llm_brain import EndpointConfig, describe_error, retryable

ATTEMPTS = 2
T = TypeVar("T")


class OpenAISpeechClient:
    """Base of one speech backend over HTTP; a subclass names its failure reason and section."""

    reason = ""  # a FAILURE_REASONS entry: stt_unavailable, tts_unavailable
    section = ""  # where the config lives, for the missing-key message: speech.openai, ...

    def __init__(self, config: EndpointConfig, client: Any = None) -> None:
        self.config = config
        self._client = client
        self.requests = 0
        if client is None and not os.environ.get(config.api_key_env):
            raise ConfigError(f"{self.section}: environment variable {config.api_key_env} (the "
                              f"API key for {config.base_url}) is not set")

    def _get_client(self) -> openai.AsyncOpenAI:
        if self._client is None:
            self._client = openai.AsyncOpenAI(
                base_url=self.config.base_url, api_key=os.environ.get(self.config.api_key_env),
                max_retries=0, timeout=self.config.timeout_s)
        return self._client

    def failed(self, what: str) -> CallFailed:
        return CallFailed(self.reason, f"{self.config.base_url}: {what}")

    async def request(self, send: Callable[[openai.AsyncOpenAI], Awaitable[T]]) -> T:
        """send(client), tried again once after a timeout, a connection error, 429 or 5xx."""
        error: BaseException | None = None
        for _ in range(ATTEMPTS):
            self.requests += 1
            try:
                async with asyncio.timeout(self.config.timeout_s):
                    return await send(self._get_client())
            except (TimeoutError, openai.OpenAIError) as e:
                error = e
                if not (isinstance(e, TimeoutError) or retryable(e)):
                    break
        raise self.failed("no answer in time" if isinstance(error, TimeoutError)
                          else describe_error(error))

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                asyncio.get_running_loop().create_task(client.close())
            except RuntimeError:  # no loop: the process is ending
                pass
