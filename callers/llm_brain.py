"""LLMBrain: the caller's replies from an OpenAI-compatible chat endpoint, scripted fallback.

Works with any server speaking the OpenAI chat-completions API (OpenAI, vLLM, Ray Serve
LLM, Ollama, llama.cpp server). Brain.reply owns the overall timeout and the fallback; this
class streams the reply, retries 429/5xx/connection errors with exponential backoff (at
most MAX_ATTEMPTS requests per turn, the openai client's own retries switched off), and
keeps facts_given honest by checking which persona facts the generated text really states.

The API key is read from the environment variable named in LLMConfig when the client is
created and handed to the openai client only: it is not kept on the brain, not in the
config, not in repr(), Reply or any exception message raised here, and nothing here turns on
the openai/httpx debug logging (OPENAI_LOG is the user's switch; the openai client redacts
the Authorization header in its own logs).
"""

from __future__ import annotations

import asyncio
import os
import random
import re
from typing import Any

import openai
from pydantic import BaseModel, ConfigDict, Field, field_validator

from callers import facts as typed
from callers.brain import Brain, Reply, ScriptedBrain, facts_stated
from callers.errors import ConfigError
from callers.persona import Persona
from callers.scenario import CallFacts

MAX_ATTEMPTS = 3
BACKOFF_BASE_S = 0.25  # 0.25, 0.5, ... plus up to 25 % jitter
BACKOFF_MAX_S = 2.0
HANGUP_TOKEN = "[HANGUP]"
MAX_REPLY_TOKENS = 80
_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")


class EndpointConfig(BaseModel):
    """An OpenAI-compatible service: where it is, which model, and the name of the variable
    holding its key (never the key)."""

    # Inputs are kept out of error text: a key pasted into api_key_env must not be echoed.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    base_url: str = Field(min_length=1)
    model: str = Field(min_length=1)
    api_key_env: str = Field(default="OPENAI_API_KEY", min_length=1)
    timeout_s: float = Field(default=8.0, gt=0, le=600, allow_inf_nan=False)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        # Caught here, not per turn: every turn would silently fall back to the script.
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL, like http://127.0.0.1:8000/v1")
        return value

    @field_validator("api_key_env")
    @classmethod
    def _variable_name(cls, value: str) -> str:
        if not _ENV_NAME.fullmatch(value):  # keys have lower case or '-': a pasted key fails
            raise ValueError("must be the name of an environment variable in capitals, like "
                             "OPENAI_API_KEY (the variable holds the key; never the key itself)")
        return value


class LLMConfig(EndpointConfig):
    """Where the LLM is and how to call it; holds the key's variable name, never the key."""

    temperature: float = Field(default=0.7, ge=0, le=2)


class LLMUnavailable(Exception):
    """The endpoint failed for this turn; the message carries no body, header or key."""


def system_prompt(persona: Persona, facts: CallFacts) -> str:
    """The persona and the scenario as instructions: who the caller is, the scenario's goal,
    the facts (typed values as the caller would say them), the temperament."""
    t = persona.temperament
    known = [f"- {item.name.replace('_', ' ')} ({item.type.replace('_', '/')}): {item.value}"
             f"{'' if item.spec.required else ' (only if asked)'}" for item in facts]
    patience = ("very patient" if t.patience >= 0.7 else "impatient" if t.patience < 0.35
                else "reasonably patient")
    verbosity = ("chatty, adding a little detail" if t.verbosity >= 0.6
                 else "brief and to the point" if t.verbosity < 0.35 else "natural")
    return "\n".join([
        f"You are {persona.display_name}, a caller phoning a customer-service voice agent.",
        f"Your goal: {facts.scenario.goal.rstrip('.')}.",
        "What you know (use exactly these values, never invent others):",
        *known,
        f"Temperament: {patience}; {verbosity}.",
        "Answer what the agent asks, one thing at a time, as a person on the phone would.",
        "If the agent reads something back wrongly, correct it and spell names letter by "
        "letter (for example S-M-I-T-H).",
        "Reply with one or two short spoken sentences: plain words, no markdown, no lists, "
        "no emojis, no stage directions. Say amounts as words or plain numbers.",
        f"When the conversation is over (the agent says goodbye, or you have run out of "
        f"patience), say your goodbye and end the reply with {HANGUP_TOKEN}.",
    ])


def history_messages(history: list[tuple[str, str]], agent_text: str) -> list[dict[str, str]]:
    """Chat messages from the call so far: the agent is the "user", the caller "assistant".

    agent_text is appended as the last user message unless history already ends with it.
    """
    messages = []
    for speaker, text in history:
        if text:
            messages.append({"role": "assistant" if speaker == "caller" else "user",
                             "content": text})
    if agent_text and not (messages and messages[-1] == {"role": "user", "content": agent_text}):
        messages.append({"role": "user", "content": agent_text})
    return messages


_MARKUP = re.compile(r"[*_#`>~|]+")
_HANGUP = re.compile(r"\[\s*hang\s*-?\s*up\s*\]", re.I)


def clean_reply(raw: str) -> tuple[str, bool]:
    """(spoken text, end_call): the hang-up token stripped, markdown and spacing tidied."""
    end_call = bool(_HANGUP.search(raw))
    text = _HANGUP.sub(" ", raw)
    text = _MARKUP.sub("", text)
    text = " ".join(text.split())
    return text, end_call


def retryable(e: BaseException) -> bool:
    if isinstance(e, openai.APIConnectionError):  # includes APITimeoutError
        return True
    if isinstance(e, openai.APIStatusError):
        return e.status_code == 429 or e.status_code >= 500
    return False


def describe_error(e: BaseException) -> str:
    """What went wrong, without the response body (a server could echo anything in it)."""
    if isinstance(e, openai.APIStatusError):
        return f"HTTP {e.status_code} ({type(e).__name__})"
    if isinstance(e, openai.APITimeoutError):
        return "request timed out"
    if isinstance(e, openai.APIConnectionError):
        return "connection error"
    return type(e).__name__


def _retry_after_s(e: BaseException) -> float | None:
    response = getattr(e, "response", None)
    value = response.headers.get("retry-after") if response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class LLMBrain(Brain):
    """Replies generated by an LLM in the persona's role; ScriptedBrain when the LLM fails.

    Interruptions (anticipate) come from the scripted fallback: they must be ready at once,
    mid agent turn, with no round trip. Brain keeps the fallback's facts_given in step.
    """

    def __init__(self, persona: Persona, seed: int, config: LLMConfig, *,
                 facts: CallFacts | None = None, fallback: Brain | None = None,
                 client: Any = None, timeout_s: float | None = None) -> None:
        if fallback is None:
            fallback = ScriptedBrain(persona, seed, facts)
        super().__init__(fallback.call_facts,
                         timeout_s=config.timeout_s if timeout_s is None else timeout_s,
                         fallback=fallback)
        self.persona = persona
        self.seed = seed
        self.config = config
        self._client = client  # created on first use, inside the running event loop
        self._owns_client = client is None
        self._rng = random.Random(seed)  # backoff jitter only
        self.attempts = 0  # requests sent, retries included
        if client is None and not os.environ.get(config.api_key_env):
            raise ConfigError(f"LLM endpoint {config.base_url}: environment variable "
                              f"{config.api_key_env} (the API key) is not set")

    def __repr__(self) -> str:
        return (f"LLMBrain(persona={self.persona.id!r}, model={self.config.model!r}, "
                f"base_url={self.config.base_url!r}, api_key_env={self.config.api_key_env!r})")

    def _get_client(self) -> Any:
        if self._client is None:
            key = os.environ.get(self.config.api_key_env)
            if not key:
                raise LLMUnavailable(f"environment variable {self.config.api_key_env} is not set")
            # The brain's wait_for bounds the whole reply; the client timeout is a backstop.
            self._client = openai.AsyncOpenAI(base_url=self.config.base_url, api_key=key,
                                              max_retries=0, timeout=self.config.timeout_s * 2)
        return self._client

    async def aclose(self) -> None:
        """Close the HTTP client if this brain created it."""
        if self._owns_client and self._client is not None:
            await self._client.close()
            self._client = None

    async def _decide(self, agent_text: str, history: list[tuple[str, str]]) -> Reply:
        messages = [{"role": "system", "content": system_prompt(self.persona, self.call_facts)},
                    *history_messages(history, agent_text)]
        raw = await self._complete(messages)
        text, end_call = clean_reply(raw)
        if not text and not end_call:
            raise LLMUnavailable("the model returned an empty reply")
        facts = facts_stated(text, self.call_facts)
        return Reply(text, end_call=end_call, intent=self.classify(agent_text), source="llm",
                     facts=facts, corrections=self._corrections(agent_text, facts))

    async def _complete(self, messages: list[dict[str, str]]) -> str:
        """The streamed completion joined, with retry and backoff on 429/5xx/connection errors."""
        client = self._get_client()
        for attempt in range(1, MAX_ATTEMPTS + 1):
            self.attempts += 1
            try:
                return await self._stream_once(client, messages)
            except openai.OpenAIError as e:
                if not retryable(e) or attempt == MAX_ATTEMPTS:
                    raise LLMUnavailable(
                        f"{describe_error(e)} after {attempt} attempt{'s' * (attempt > 1)}") from None
                delay = min(BACKOFF_BASE_S * 2 ** (attempt - 1), BACKOFF_MAX_S)
                delay *= 1 + 0.25 * self._rng.random()
                retry_after = _retry_after_s(e)
                if retry_after is not None:
                    delay = max(delay, min(retry_after, BACKOFF_MAX_S))
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def _stream_once(self, client: Any, messages: list[dict[str, str]]) -> str:
        stream = await client.chat.completions.create(
            model=self.config.model, messages=messages, temperature=self.config.temperature,
            max_tokens=MAX_REPLY_TOKENS, stream=True)
        parts = []
        try:
            async for chunk in stream:
                for choice in chunk.choices or ():
                    content = getattr(choice.delta, "content", None)
                    if content:
                        parts.append(content)
        finally:
            await stream.close()
        return "".join(parts)

    def _corrections(self, agent_text: str, stated: tuple[str, ...]) -> tuple[str, ...]:
        """Facts the agent read back wrongly that this reply states again (a correction)."""
        wrong = typed.wrong_read_backs(agent_text, self.call_facts.typed_facts,
                                       self.call_facts.phrases)
        return tuple(fact for fact in wrong if fact in stated)
