"""LLMJudge: the last source of understanding, for agents that neither report nor read back.

Asked only about the facts the agent's state and its read-backs left not observed, in one
request per call to any OpenAI-compatible chat endpoint. It sees the agent's turns (numbered
by their index in the record's turns, each and all of them bounded in size) and each fact's
name, type and expected value, and answers per fact {"heard", "quote", "turn"} or
{"heard": null}. A verdict is kept only when its quote is in the agent turn it cites (case
and punctuation aside): the judge can say what the agent understood, never invent the words
it rests on. Whether the value heard is right is decided by the grader's typed comparison.

Synchronous (grading runs after the call): the fleet calls it from a worker thread. One
attempt per call under a timeout; any failure leaves the facts not observed and comes back
as a short error text without response body or key. The key is read from the environment
variable named in the config when the client is made and handed to the openai client only.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from typing import Any

import openai
from pydantic import Field

from callers import facts as typed
from callers.facts.words import plain
from callers.llm_brain import LLMConfig, describe_error

MAX_TURN_CHARS = 600  # one agent turn as shown to the judge
MAX_PROMPT_TURN_CHARS = 12_000  # all of them: the latest turns are kept
MAX_ERROR_CHARS = 200


class JudgeConfig(LLMConfig):
    """evaluation.judge in a run config: the endpoint, the model, the key's variable name."""

    timeout_s: float = Field(default=20.0, gt=0, le=300)  # one request per graded call
    temperature: float = Field(default=0.0, ge=0, le=2)


@dataclass
class Verdict:
    """What the agent understood of one fact, with the words of the turn that show it."""

    heard: str
    quote: str
    turn: int


@dataclass
class JudgeResult:
    verdicts: dict[str, Verdict] = field(default_factory=dict)
    rejected: list[str] = field(default_factory=list)  # a quote not in the turn it cites
    error: str | None = None

    def notes(self) -> dict[str, Any]:
        """For the understanding dict: what the judge rested on, what it cited wrongly, and
        why it gave nothing."""
        notes: dict[str, Any] = {"judge_evidence": {
            name: {"turn": v.turn, "quote": v.quote} for name, v in self.verdicts.items()}}
        if self.rejected:
            notes["judge_rejected"] = self.rejected
        if self.error:
            notes["judge_error"] = self.error
        return notes


class JudgeUnavailable(Exception):
    """The endpoint or its answer failed; the message carries no body, header or key."""


def agent_turns(turns: list[dict[str, Any]]) -> dict[int, str]:
    """{index in turns: text} of the agent's turns."""
    return {i: str(t.get("text", "")) for i, t in enumerate(turns)
            if t.get("speaker") == "agent" and str(t.get("text", "")).strip()}


def shown_turns(turns: dict[int, str]) -> dict[int, str]:
    """The turns the judge sees: each cut to MAX_TURN_CHARS, the latest that fit in all."""
    shown: dict[int, str] = {}
    budget = MAX_PROMPT_TURN_CHARS
    for i in sorted(turns, reverse=True):  # read-backs and confirmations come late
        text = turns[i][:MAX_TURN_CHARS]
        if len(text) > budget:
            break
        shown[i], budget = text, budget - len(text)
    return dict(sorted(shown.items()))


def prompt(facts: list[typed.Fact], turns: dict[int, str]) -> list[dict[str, str]]:
    """The chat messages: instructions, then the facts and the numbered agent turns."""
    listed = "\n".join(f"- {f.name} (type {f.type}): expected {f.value!r}" for f in facts)
    shown = "\n".join(f"[{i}] {text}" for i, text in turns.items())
    example = {facts[0].name: {"heard": "...", "quote": "...", "turn": next(iter(turns), 0)}}
    return [
        {"role": "system", "content": (
            "You grade a phone call between a caller and a voice agent. For each fact, decide "
            "what value the agent itself understood, from the agent's own words only: a "
            "read-back, a confirmation, a restatement. Do not count what the caller said, and "
            "do not guess. Answer with one JSON object and nothing else, one key per fact: "
            '{"heard": "<the value the agent understood>", "quote": "<exact words copied '
            'from one agent turn that show it>", "turn": <that turn\'s number>}, or '
            '{"heard": null} when the agent\'s words do not show its understanding of that '
            f"fact. Example: {json.dumps(example)}")},
        {"role": "user", "content": f"Facts:\n{listed}\n\nAgent turns:\n{shown}"},
    ]


def parse_answer(content: str, names: list[str]) -> dict[str, Any]:
    """The answer's JSON object (code fences, text around it and a {"facts": {...}} wrapper
    tolerated)."""
    text = content.strip()
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end < start:
        raise JudgeUnavailable("the answer holds no JSON object")
    try:
        data = json.loads(text[start:end + 1])
    except json.JSONDecodeError:
        raise JudgeUnavailable("the answer is not valid JSON") from None
    if not isinstance(data, dict):
        raise JudgeUnavailable("the answer is not a JSON object")
    if not any(n in data for n in names) and isinstance(data.get("facts"), dict):
        data = data["facts"]
    return data


def quoted_in(quote: str, turn_text: str) -> bool:
    """The quote is in the turn, case and punctuation aside (and not empty)."""
    q = plain(quote)
    return bool(q) and f" {q} " in f" {plain(turn_text)} "


def verdicts(answer: dict[str, Any], facts: list[typed.Fact],
             turns: dict[int, str]) -> JudgeResult:
    """Verdicts whose quote is in the agent turn they cite; the rest rejected or not observed."""
    result = JudgeResult()
    for fact in facts:
        item = answer.get(fact.name)
        if not isinstance(item, dict) or item.get("heard") is None:
            continue  # not observed
        heard, quote, turn = item.get("heard"), item.get("quote"), item.get("turn")
        if isinstance(turn, str) and turn.strip().isdigit():
            turn = int(turn)
        if (isinstance(heard, dict | list) or not isinstance(quote, str)
                or not isinstance(turn, int) or isinstance(turn, bool) or turn not in turns
                or not quoted_in(quote, turns[turn])):
            result.rejected.append(fact.name)
            continue
        result.verdicts[fact.name] = Verdict(str(heard)[:200], quote[:300], turn)
    return result


class LLMJudge:
    """Asks an OpenAI-compatible endpoint what the agent understood of the facts no other
    source showed; ask() never raises, a failure is JudgeResult.error."""

    def __init__(self, config: JudgeConfig, *, client: Any = None) -> None:
        self.config = config
        self._client = client  # made on first use, from the key's variable
        self._lock = threading.Lock()  # the fleet grades in worker threads
        self.requests = 0

    def __repr__(self) -> str:
        return (f"LLMJudge(model={self.config.model!r}, base_url={self.config.base_url!r}, "
                f"api_key_env={self.config.api_key_env!r})")

    def ask(self, facts: list[typed.Fact], turns: list[dict[str, Any]]) -> JudgeResult:
        """Verdicts for facts from the agent's turns of a record; nothing asked for no facts
        or no agent words."""
        shown = shown_turns(agent_turns(turns))
        if not facts or not shown:
            return JudgeResult()
        try:
            content = self._complete(prompt(facts, shown), len(facts))
            return verdicts(parse_answer(content, [f.name for f in facts]), facts, shown)
        except JudgeUnavailable as e:
            return JudgeResult(error=str(e)[:MAX_ERROR_CHARS])
        except openai.OpenAIError as e:
            return JudgeResult(error=describe_error(e)[:MAX_ERROR_CHARS])
        except Exception as e:  # a broken judge must never cost the record
            return JudgeResult(error=f"judge failed: {type(e).__name__}"[:MAX_ERROR_CHARS])

    def _get_client(self) -> Any:
        with self._lock:
            if self._client is None:
                key = os.environ.get(self.config.api_key_env)
                if not key:
                    raise JudgeUnavailable(f"environment variable {self.config.api_key_env} "
                                           "is not set")
                self._client = openai.OpenAI(base_url=self.config.base_url, api_key=key,
                                             max_retries=0, timeout=self.config.timeout_s)
            return self._client

    def _complete(self, messages: list[dict[str, str]], n_facts: int) -> str:
        client = self._get_client()
        self.requests += 1
        response = client.chat.completions.create(
            model=self.config.model, messages=messages, temperature=self.config.temperature,
            max_tokens=min(200 + 150 * n_facts, 2000), stream=False)
        choices = getattr(response, "choices", None) or ()
        content = choices[0].message.content if choices else None
        if not content:
            raise JudgeUnavailable("the model returned an empty answer")
        return content

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
