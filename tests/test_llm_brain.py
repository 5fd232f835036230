"""LLMBrain against a real OpenAI-compatible HTTP server on loopback (aiohttp, SSE streaming)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging

import pytest

from callers.llm_brain import (LLMBrain, LLMConfig, clean_reply, facts_stated, history_messages,
                               system_prompt)
from callers.brain import default_facts
from callers.persona import Persona
from tests.fake_llm import FakeLLM, llm  # noqa: F401  (llm is a fixture)

PERSONA = Persona.model_validate({
    "id": "llm-john",
    "display_name": "John Smith",
    "goal": "Ask for a refund of 250 dollars",
    "facts": {"first_name": "John", "last_name": "Smith", "amount": 250,
              "reason": "a refund for a double charge"},
    "temperament": {"patience": 0.7, "verbosity": 0.3},
})
KEY_ENV = "CALLFLEET_TEST_LLM_KEY"
KEY = "sk-test-0000"


def make_brain(fake: FakeLLM, timeout_s: float = 5.0) -> LLMBrain:
    config = LLMConfig(base_url=fake.url, model="test-model", api_key_env=KEY_ENV,
                       timeout_s=timeout_s)
    return LLMBrain(PERSONA, seed=1, config=config)


@pytest.fixture(autouse=True)
def key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)


async def test_streamed_reply_is_returned_whole(llm):
    llm.script = [("stream", ["Sure, ", "my name is ", "John", " Smith", "."])]
    brain = make_brain(llm)
    history = [("agent", "Hello! How can I help you today?"),
               ("caller", "I'm calling about a refund for a double charge.")]
    reply = await brain.reply("May I have your full name?", history)
    await brain.aclose()
    assert reply.text == "Sure, my name is John Smith."
    assert reply.source == "llm" and reply.fallback_reason == ""
    assert not reply.end_call
    assert reply.intent == "first_name"
    assert {"first_name", "last_name"} <= brain.facts_given
    assert "amount" not in brain.facts_given
    body = llm.requests[0]["body"]
    assert body["stream"] is True and body["model"] == "test-model"
    roles = [m["role"] for m in body["messages"]]
    assert roles == ["system", "user", "assistant", "user"]
    assert body["messages"][-1]["content"] == "May I have your full name?"
    assert "250" in body["messages"][0]["content"] and HANGUP in body["messages"][0]["content"]


HANGUP = "[HANGUP]"


async def test_hangup_token_ends_the_call(llm):
    llm.script = [("stream", ["Thanks, that's all. ", "Bye! [HANG", "UP]"])]
    brain = make_brain(llm)
    reply = await brain.reply("Is there anything else?", [])
    await brain.aclose()
    assert reply.text == "Thanks, that's all. Bye!"
    assert reply.end_call and reply.source == "llm"


async def test_429_then_success_is_retried(llm):
    llm.script = [("status", 429, "slow down"), ("stream", ["It's ", "250 dollars."])]
    brain = make_brain(llm)
    reply = await brain.reply("What amount is this about?", [])
    await brain.aclose()
    assert len(llm.requests) == 2
    assert reply.source == "llm" and reply.fallback_reason == ""
    assert reply.text == "It's 250 dollars."
    assert "amount" in brain.facts_given


async def test_persistent_5xx_falls_back_after_three_attempts(llm):
    llm.script = [("status", 503, "down")] * 3
    brain = make_brain(llm)
    reply = await brain.reply("What is your last name?", [])
    await brain.aclose()
    assert len(llm.requests) == 3
    assert reply.source == "scripted"
    assert "HTTP 503" in reply.fallback_reason and "down" not in reply.fallback_reason
    assert "Smith" in reply.text and "last_name" in brain.facts_given


async def test_client_error_is_not_retried(llm):
    llm.script = [("status", 400, "bad request")]
    brain = make_brain(llm)
    reply = await brain.reply("What is your first name?", [])
    await brain.aclose()
    assert len(llm.requests) == 1
    assert reply.source == "scripted" and "HTTP 400" in reply.fallback_reason


async def test_timeout_falls_back_to_scripted(llm):
    llm.script = [("sleep", 3.0)]
    brain = make_brain(llm, timeout_s=0.5)
    loop = asyncio.get_running_loop()
    start = loop.time()
    reply = await brain.reply("What is your first name?", [])
    elapsed = loop.time() - start
    await brain.aclose()
    assert reply.fallback_reason == "timeout"
    assert reply.source == "scripted"
    assert "John" in reply.text and "first_name" in brain.facts_given
    assert 0.5 <= elapsed < 1.5


CANARY = "sk-canary-1234567890"


async def test_canary_key_is_sent_but_never_shown(llm, monkeypatch, caplog, capfd):
    monkeypatch.setenv(KEY_ENV, CANARY)
    caplog.set_level(logging.DEBUG)  # root: openai, httpx and aiohttp debug records included
    llm.script = [
        ("status", 429, "slow down"), ("stream", ["My first name is John."]),  # retried
        ("status", 401, f"invalid key {CANARY}"),  # a server echoing the key back
    ]
    brain = make_brain(llm)
    ok = await brain.reply("What is your first name?", [])
    failed = await brain.reply("And your last name?", [("agent", "What is your first name?"),
                                                        ("caller", ok.text)])
    await brain.aclose()
    print(ok, failed, brain)  # even printing everything must not show it

    assert [r["headers"].get("Authorization") for r in llm.requests] == [f"Bearer {CANARY}"] * 3
    assert ok.source == "llm" and failed.source == "scripted"
    assert "HTTP 401" in failed.fallback_reason
    out, err = capfd.readouterr()
    records = "\n".join(f"{r.name} {r.getMessage()} {r.args!r}" for r in caplog.records)
    assert caplog.records, "expected debug records from the HTTP stack"
    for where, text in {
        "logs": caplog.text + records,
        "stdout": out,
        "stderr": err,
        "replies": json.dumps([dataclasses.asdict(ok), dataclasses.asdict(failed)]),
        "repr": repr(brain) + str(brain) + repr(brain.config) + brain.config.model_dump_json(),
    }.items():
        assert CANARY not in text, where
        assert "canary" not in text, where


def test_prompt_history_and_parsing():
    facts = default_facts(PERSONA)
    prompt = system_prompt(PERSONA, facts)
    assert "customer-service voice agent" in prompt and "no markdown" in prompt
    assert "John" in prompt and "Smith" in prompt and "refund" in prompt
    messages = history_messages([("agent", "Hi, how can I help?"), ("caller", "A refund."),
                                 ("agent", "Your name?")], "Your name?")
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert clean_reply("**Yes**, that's right. [hangup]") == ("Yes, that's right.", True)
    assert "amount (money): 250" in prompt and "Dispute a charge" in prompt
    assert facts_stated("No, it's Smith, S-M-I-T-H.", facts) == ("last_name",)
    assert facts_stated("About two hundred fifty dollars.", facts) == ("amount",)
    assert facts_stated("I want a refund, I was charged twice.", facts) == ()
    assert facts_stated("It's about a refund for a double charge.", facts) == ("reason",)
    with pytest.raises(Exception, match="extra"):
        LLMConfig(base_url="http://127.0.0.1:1/v1", model="m", api_key="sk-no")


# --- interruptions and the fallback's view of what was said ----------------------------------


async def test_anticipate_comes_from_the_fallback_without_a_request(llm):
    llm.script = [("stream", ["I'm calling about a refund for a double charge."])]
    brain = make_brain(llm)
    await brain.reply("How can I help you today?", [])
    blurt = brain.anticipate()
    brain.said(blurt)
    await brain.aclose()
    assert len(llm.requests) == 1  # the interruption needed no round trip
    assert blurt.text.startswith("Sorry, ") and "John" in blurt.text
    assert blurt.intent == "first_name" and blurt.source == "scripted"
    assert brain.facts_given == brain.fallback.facts_given == {"reason", "first_name"}


async def test_fallback_turns_after_llm_turns_neither_repeat_nor_skip_facts(llm):
    llm.script = [("stream", ["Hi, it's about a refund for a double charge."]),
                  ("stream", ["Sure, my first name is John."]),
                  ("status", 400, "bad request")]
    brain = make_brain(llm)
    history: list[tuple[str, str]] = []
    for question in ("How can I help you today?", "What is your first name?",
                     "And your last name?"):
        reply = await brain.reply(question, history)
        history += [("agent", question), ("caller", reply.text)]
    await brain.aclose()
    assert reply.source == "scripted" and "Smith" in reply.text  # the fallback's turn
    assert brain.fallback.facts_given == brain.facts_given == {"reason", "first_name",
                                                               "last_name"}
    blurt = brain.anticipate()  # the fallback knows what the LLM said: amount is next
    brain.said(blurt)
    assert blurt.intent == "amount" and brain.goal_met
    assert brain.anticipate() is None


# --- the LLM brain inside a CallerHost --------------------------------------------------------


async def test_caller_host_builds_an_llm_brain_per_call_and_closes_it(llm, monkeypatch,
                                                                       tmp_path, caplog):
    from callers.record import CallRecord
    from orchestration import host as host_module

    monkeypatch.setenv(KEY_ENV, CANARY)
    caplog.set_level(logging.DEBUG)
    brains = []

    class FakeSession:  # stands in for the media: asks the brain one question, like a call
        def __init__(self, persona, seed, target, models, *, brain, call_id, **_):
            self.brain, self.persona, self.seed, self.call_id = brain, persona, seed, call_id
            brains.append(brain)

        async def run(self):
            reply = await self.brain.reply("What is your first name?", [])
            return CallRecord(call_id=self.call_id, persona=self.persona.id, seed=self.seed,
                              status="completed", turns=[{"speaker": "caller",
                                                          "text": reply.text}])

    monkeypatch.setattr(host_module, "CallSession", FakeSession)
    monkeypatch.setattr(host_module, "resolve_persona", lambda name: PERSONA)
    host = host_module.CallerHostImpl(str(tmp_path))
    host.models = object()  # no speech models needed by the fake session
    section = {"kind": "llm", "base_url": llm.url, "model": "test-model",
               "api_key_env": KEY_ENV, "timeout_s": 5.0, "temperature": 0.7}
    target = {"url": "http://127.0.0.1:9/offer", "signaling": "json-offer", "token_env": None,
              "codec": "opus"}
    records = [await host.place({"call_id": f"c{i}", "persona": "llm-john", "seed": i,
                                 "target": target, "brain": section}) for i in range(2)]
    host.lag._task.cancel()

    assert [r["status"] for r in records] == ["completed", "completed"]
    assert len(brains) == 2 and brains[0] is not brains[1]  # one brain per call
    assert all(isinstance(b, LLMBrain) and b._client is None for b in brains)  # closed
    assert [b.seed for b in brains] == [0, 1] and brains[0].persona is PERSONA
    assert [r["headers"]["Authorization"] for r in llm.requests] == [f"Bearer {CANARY}"] * 2
    written = json.dumps(records) + caplog.text + json.dumps(section)
    assert CANARY not in written


async def test_caller_host_without_the_key_records_a_failed_call_naming_only_the_variable(
        monkeypatch, tmp_path):
    from orchestration import host as host_module

    monkeypatch.delenv(KEY_ENV)
    monkeypatch.setattr(host_module, "resolve_persona", lambda name: PERSONA)
    host = host_module.CallerHostImpl(str(tmp_path))
    host.models = object()
    record = await host.place({
        "call_id": "c0", "persona": "llm-john", "seed": 0,
        "target": {"url": "http://127.0.0.1:9/offer"},
        "brain": {"kind": "llm", "base_url": "http://127.0.0.1:9/v1", "model": "m",
                  "api_key_env": KEY_ENV}})
    host.lag._task.cancel()
    assert record["status"] == "failed" and record["failure_reason"] == "caller_error"
    assert KEY_ENV in record["failure_detail"]


def test_make_brain_is_scripted_by_default():
    from callers.brain import ScriptedBrain
    from orchestration.host import make_brain

    assert type(make_brain(None, PERSONA, 1)) is ScriptedBrain
    assert type(make_brain({"kind": "scripted"}, PERSONA, 1)) is ScriptedBrain
