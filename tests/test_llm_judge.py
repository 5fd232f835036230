"""The LLM judge against a local OpenAI-compatible server: asked only about unseen facts, kept
only with a quote from the turn it cites, graded by typed matching, and never costs a record."""

from __future__ import annotations

import asyncio
import json

import pytest

from callers.errors import ConfigError
from evaluation.llm_judge import JudgeConfig, LLMJudge, parse_answer, quoted_in
from evaluation.scoring import score_call
from orchestration.config import load_run_config
from orchestration.fleet import Fleet
from orchestration.store import RunStore, read_records
from tests.fake_llm import FakeLLM, llm  # noqa: F401  (llm is a fixture)

KEY_ENV = "CALLFLEET_TEST_JUDGE_KEY"
KEY = "sk-judge-canary-7731"
FACTS = {"first_name": {"type": "name", "value": "John", "state_key": "first_name"},
         "last_name": {"type": "name", "value": "Smith", "state_key": "last_name"},
         "amount": {"type": "money", "value": "250", "state_key": "amount"}}
# The agent reads back the amount (typed matching finds it) but never the name: turns 2 and 4
# show it only in words a read-back finder does not count.
TURNS = [("agent", "Hello, how can I help?"),
         ("caller", "I am John Smith, disputing 250 dollars."),
         ("agent", "Thanks, John, I have noted the dispute for two hundred fifty dollars."),
         ("caller", "Bye."),
         ("agent", "Goodbye, Mister Smith.")]


def record(turns=TURNS, **extra):
    return {"call_id": "c1", "status": "completed", "events": [{"kind": "connected", "t_ms": 0}],
            "agent_state": {}, "facts": FACTS,
            "turns": [{"speaker": s, "text": t, "start_ms": i * 1000.0, "end_ms": i * 1000.0 + 900}
                      for i, (s, t) in enumerate(turns)], **extra}


def answer(**facts) -> tuple:
    return ("stream", [json.dumps(facts)])


def judge_for(fake: FakeLLM, timeout_s: float = 5.0) -> LLMJudge:
    return LLMJudge(JudgeConfig(base_url=fake.url, model="judge-model", api_key_env=KEY_ENV,
                                timeout_s=timeout_s))


async def grade(rec: dict, judge: LLMJudge) -> dict:
    try:  # the judge blocks: off the loop that serves the fake endpoint, as the fleet does
        return await asyncio.to_thread(score_call, rec, judge)
    finally:
        judge.close()


@pytest.fixture(autouse=True)
def key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)


async def test_judge_fills_the_facts_no_other_source_showed_and_names_itself(llm):
    llm.script = [answer(first_name={"heard": "John", "quote": "thanks john", "turn": 2},
                         last_name={"heard": "Smith", "quote": "Mister Smith.", "turn": 4})]
    u = (await grade(record(), judge_for(llm)))["understanding"]
    assert u["correct"] == {"amount": True, "first_name": True, "last_name": True}
    assert u["sources"] == {"amount": "read-back", "first_name": "llm-judge",
                            "last_name": "llm-judge"}
    assert u["source"] == "read-back"  # the most trusted source that showed a fact
    assert (u["observed"], u["not_observed"]) == (3, [])
    assert u["understood"]["first_name"] == "John"
    assert u["judge_evidence"] == {"first_name": {"turn": 2, "quote": "thanks john"},
                                   "last_name": {"turn": 4, "quote": "Mister Smith."}}
    assert "judge_error" not in u and "judge_rejected" not in u
    body = llm.requests[0]["body"]
    assert body["model"] == "judge-model" and not body.get("stream")
    assert body["temperature"] == 0
    prompt = body["messages"][-1]["content"]
    assert "[2] Thanks, John" in prompt and "[4] Goodbye, Mister Smith." in prompt
    assert "I am John Smith" not in prompt  # the caller's words are not the agent's
    assert llm.requests[0]["headers"]["Authorization"] == f"Bearer {KEY}"


async def test_judge_says_not_heard_and_the_fact_stays_not_observed(llm):
    llm.script = [answer(first_name={"heard": None}, last_name={"heard": None})]
    u = (await grade(record(), judge_for(llm)))["understanding"]
    assert u["correct"] == {"amount": True}
    assert u["not_observed"] == ["first_name", "last_name"] and u["observed"] == 1
    assert u["judge_evidence"] == {}


@pytest.mark.parametrize("verdict", [
    {"heard": "John", "quote": "Thanks, John", "turn": 4},  # in another turn than cited
    {"heard": "John", "quote": "I am John Smith", "turn": 1},  # the caller's turn
    {"heard": "John", "quote": "I have noted your name as John", "turn": 2},  # invented
    {"heard": "John", "quote": "", "turn": 2},
    {"heard": "John", "quote": "Thanks, John", "turn": 99},
    {"heard": "John", "turn": 2},
])
async def test_a_quote_not_in_the_cited_agent_turn_is_rejected(llm, verdict):
    llm.script = [answer(first_name=verdict, last_name={"heard": None})]
    u = (await grade(record(), judge_for(llm)))["understanding"]
    assert "first_name" not in u["correct"] and "first_name" in u["not_observed"]
    assert u["judge_rejected"] == ["first_name"]
    assert u["sources"] == {"amount": "read-back"}


def test_quotes_match_whole_words_case_and_punctuation_aside():
    assert quoted_in("thanks john", "Thanks, John, I have noted")
    assert quoted_in("MISTER SMITH!", "Goodbye, Mister Smith.")
    assert not quoted_in("John", "Johnny, thanks")
    assert not quoted_in("...", "Thanks.")


@pytest.mark.parametrize("content", [
    '```json\n{"first_name": {"heard": null}}\n```',
    'Here you are: {"first_name": {"heard": null}}',
    '{"facts": {"first_name": {"heard": null}}}',
])
def test_answers_in_fences_prose_or_a_wrapper_are_read(content):
    assert parse_answer(content, ["first_name"]) == {"first_name": {"heard": None}}


async def test_a_wrong_value_is_graded_wrong_by_typed_matching(llm):
    turns = [*TURNS[:4], ("agent", "Goodbye, Mister Smithers, your refund is 520.")]
    llm.script = [answer(first_name={"heard": "Mark", "quote": "Thanks, John", "turn": 2},
                         last_name={"heard": "Smithers", "quote": "mister smithers", "turn": 4})]
    u = (await grade(record(turns), judge_for(llm)))["understanding"]
    # The judge's values are compared by callers.facts, not taken as its verdict.
    assert u["correct"]["first_name"] is False and u["correct"]["last_name"] is False
    assert u["sources"]["last_name"] == "llm-judge"


async def test_typed_matching_accepts_the_value_in_any_spoken_form(llm):
    rec = record([("agent", "What is it about?"), ("caller", "250 dollars."),
                  ("agent", "Understood, two fifty it is, and your name please?")])
    llm.script = [answer(amount={"heard": "two hundred and fifty dollars",
                                 "quote": "two fifty it is", "turn": 2})]
    u = (await grade(rec, judge_for(llm)))["understanding"]
    assert u["correct"]["amount"] is True and u["sources"]["amount"] == "llm-judge"


async def test_facts_shown_by_state_or_read_back_are_not_sent_to_the_judge(llm):
    llm.script = [answer(last_name={"heard": "Smith", "quote": "Mister Smith", "turn": 4})]
    rec = record(agent_state={"entities": {"first_name": "John"}})
    u = (await grade(rec, judge_for(llm)))["understanding"]
    assert u["sources"] == {"first_name": "agent-state", "amount": "read-back",
                            "last_name": "llm-judge"}
    prompt = llm.requests[0]["body"]["messages"][-1]["content"]
    facts_part = prompt.split("Agent turns:")[0]
    assert "last_name" in facts_part
    assert "first_name" not in facts_part and "amount" not in facts_part


async def test_no_request_when_every_fact_was_observed_or_no_judge_given(llm):
    everything = {"entities": {"first_name": "John", "last_name": "Smith"}}
    u = (await grade(record(agent_state=everything), judge_for(llm)))["understanding"]
    assert llm.requests == [] and u["observed"] == 3
    assert not any(k.startswith("judge") for k in u)
    plain = score_call(record())["understanding"]  # no judge: as before, no judge keys
    assert plain["not_observed"] == ["first_name", "last_name"]
    assert not any(k.startswith("judge") for k in plain)


@pytest.mark.parametrize(("step", "error"), [
    (("status", 500, f"upstream failed for key {KEY}"), "HTTP 500 (InternalServerError)"),
    (("status", 401, f"bad key {KEY}"), "HTTP 401 (AuthenticationError)"),
    (("sleep", 5.0), "request timed out"),
    (("stream", ["I think the agent heard John."]), "the answer holds no JSON object"),
    (("stream", ["{\"first_name\": "]), "the answer holds no JSON object"),
    (("stream", ["{\"first_name\": oops}"]), "the answer is not valid JSON"),
    (("stream", [""]), "the model returned an empty answer"),
])
async def test_a_failing_or_slow_endpoint_leaves_facts_not_observed_and_says_why(
        llm, step, error):
    llm.script = [step]
    rec = await grade(record(), judge_for(llm, timeout_s=0.5))
    u = rec["understanding"]
    assert u["judge_error"] == error
    assert u["correct"] == {"amount": True}
    assert u["not_observed"] == ["first_name", "last_name"]
    assert rec["task"]["checks"]["understood"] is True  # unseen is not wrong
    assert len(llm.requests) == 1  # one attempt, no retries
    assert KEY not in json.dumps(rec)


async def test_the_key_never_appears_in_the_record(llm, monkeypatch):
    llm.script = [answer(first_name={"heard": "John", "quote": "Thanks, John", "turn": 2})]
    rec = await grade(record(), judge_for(llm))
    assert llm.requests[0]["headers"]["Authorization"] == f"Bearer {KEY}"  # used, only there
    assert rec["understanding"]["sources"]["first_name"] == "llm-judge"
    assert KEY not in json.dumps(rec)
    monkeypatch.delenv(KEY_ENV)
    u = (await grade(record(), judge_for(llm)))["understanding"]
    assert u["judge_error"] == f"environment variable {KEY_ENV} is not set"
    assert len(llm.requests) == 1 and KEY not in json.dumps(u)
    assert KEY not in repr(judge_for(llm))


async def test_agent_turns_are_bounded_in_size(llm):
    long_turns = [("agent", f"Turn {i}: " + "blah " * 400) for i in range(60)]
    llm.script = [answer(first_name={"heard": None})]
    await grade(record([*long_turns, ("agent", "Thanks, John.")]), judge_for(llm))
    prompt = llm.requests[0]["body"]["messages"][-1]["content"]
    assert len(prompt) < 14_000
    assert "[60] Thanks, John." in prompt and "[0] Turn 0" not in prompt  # the latest kept


async def test_the_fleet_grades_with_the_judge_off_its_loop_and_stores_the_record(
        llm, tmp_path):
    llm.script = [answer(first_name={"heard": "John", "quote": "Thanks, John", "turn": 2},
                         last_name={"heard": None})]
    path = tmp_path / "run.yaml"
    path.write_text(json.dumps({**BASE, "evaluation": {"judge": {
        "base_url": llm.url, "model": "judge-model", "api_key_env": KEY_ENV}}}))
    config = load_run_config(path)
    with RunStore(tmp_path / "run") as store:
        fleet = Fleet(config, config.target.to_target(), store)
        fleet._record(record())
        fleet._record(record())  # a duplicate is still ignored
        await asyncio.gather(*fleet._grading)
        fleet.judge.close()
    records, warnings = read_records(tmp_path / "run" / "calls.jsonl")
    assert warnings == [] and len(records) == 1 and len(llm.requests) == 1
    u = records[0]["understanding"]
    assert u["sources"]["first_name"] == "llm-judge" and u["not_observed"] == ["last_name"]


# --- the evaluation.judge section of a run config ------------------------------------------

BASE = {"personas": {"cooperative-john": 1},
        "load": {"total_calls": 2, "max_concurrency": 1, "calls_per_second": 1}}
JUDGE = {"base_url": "http://127.0.0.1:8000/v1", "model": "qwen", "api_key_env": KEY_ENV}


def write(tmp_path, evaluation):
    path = tmp_path / "run.yaml"
    path.write_text(json.dumps({**BASE, "evaluation": evaluation}))  # JSON is YAML
    return path


def test_judge_section_loads_with_its_defaults(tmp_path):
    judge = load_run_config(write(tmp_path, {"judge": JUDGE})).evaluation.judge
    assert (judge.base_url, judge.model, judge.api_key_env) == (JUDGE["base_url"], "qwen",
                                                                KEY_ENV)
    assert (judge.timeout_s, judge.temperature) == (20.0, 0.0)
    assert KEY not in judge.model_dump_json() + repr(judge)
    assert load_run_config(write(tmp_path, {})).evaluation.judge is None


@pytest.mark.parametrize(("evaluation", "expected"), [
    ({"judge": {**JUDGE, "base_url": "127.0.0.1:8000/v1"}},
     "evaluation.judge.base_url: must be an http:// or https:// URL"),
    ({"judge": {**JUDGE, "model": ""}}, "evaluation.judge.model: String should have at least"),
    ({"judge": {**JUDGE, "timeout_s": 0}}, "evaluation.judge.timeout_s: Input should be greater"),
    ({"judge": {**JUDGE, "api_key": KEY}}, "evaluation.judge.api_key: unknown field"),
    ({"judge": {**JUDGE, "api_key_env": KEY}},
     "evaluation.judge.api_key_env: must be the name of an environment variable"),
    ({"judge": {"model": "m"}}, "evaluation.judge.base_url: Field required"),
    ({"grader": {}}, "evaluation.grader: unknown field"),
])
def test_bad_judge_section_is_one_line_naming_the_field(tmp_path, evaluation, expected):
    path = write(tmp_path, evaluation)
    with pytest.raises(ConfigError) as info:
        load_run_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and expected in message, message
    assert "\n" not in message and KEY not in message


def test_missing_judge_key_variable_fails_before_any_call_naming_only_the_variable(
        tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_ENV)
    path = write(tmp_path, {"judge": JUDGE})
    with pytest.raises(ConfigError) as info:
        load_run_config(path)
    assert str(info.value) == (f"{path}: evaluation.judge.api_key_env: environment variable "
                               f"{KEY_ENV} (the API key for http://127.0.0.1:8000/v1) is not set")
