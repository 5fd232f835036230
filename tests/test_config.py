"""Run configs: the brain section, its one-line errors, and the API key kept to its name."""

from __future__ import annotations

import json

import pytest

from callers.errors import ConfigError
from callers.llm_brain import LLMConfig
from orchestration.config import (LLMBrainConfig, ScriptedBrainConfig, load_run_config,
                                  with_brain)

KEY_ENV = "CALLFLEET_TEST_CONFIG_KEY"
CANARY = "sk-canary-config-0042"
BASE = {"personas": {"cooperative-john": 1},
        "load": {"total_calls": 2, "max_concurrency": 1, "calls_per_second": 1}}
LLM = {"kind": "llm", "base_url": "http://127.0.0.1:8000/v1", "model": "qwen",
       "api_key_env": KEY_ENV}


def write(tmp_path, **sections):
    path = tmp_path / "run.yaml"
    path.write_text(json.dumps({**BASE, **sections}))  # JSON is YAML
    return path


@pytest.fixture
def key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, CANARY)


def test_brain_defaults_to_scripted(tmp_path):
    assert load_run_config(write(tmp_path)).brain == ScriptedBrainConfig()
    assert load_run_config(write(tmp_path, brain={"kind": "scripted"})).brain.kind == "scripted"


def test_llm_brain_section_reuses_llm_config_with_its_defaults(tmp_path, key):
    brain = load_run_config(write(tmp_path, brain=LLM)).brain
    assert isinstance(brain, LLMBrainConfig) and isinstance(brain, LLMConfig)
    assert (brain.base_url, brain.model, brain.api_key_env) == (LLM["base_url"], "qwen", KEY_ENV)
    assert (brain.timeout_s, brain.temperature) == (8.0, 0.7)
    assert CANARY not in brain.model_dump_json() + repr(brain)


@pytest.mark.parametrize(
    ("brain", "expected"),
    [
        ({}, "brain.kind: field required"),
        ({"kind": "gpt"}, "brain.kind: expected one of 'scripted', 'llm', got 'gpt'"),
        ({"kind": "llm", "model": "m"}, "brain.base_url: Field required"),
        ({**LLM, "model": ""}, "brain.model: String should have at least 1 character"),
        ({**LLM, "base_url": "127.0.0.1:8000/v1"}, "brain.base_url: must be an http://"),
        ({**LLM, "timeout_s": 0}, "brain.timeout_s: Input should be greater than 0, got 0"),
        ({**LLM, "temperature": 3}, "brain.temperature: Input should be less than or equal to 2"),
        ({**LLM, "api_key": CANARY}, "brain.api_key: unknown field"),
        ({"kind": "scripted", "model": "m"}, "brain.model: unknown field"),
        ("llm", "brain: Input should be a valid dictionary"),
    ],
)
def test_bad_brain_section_is_one_line_naming_file_and_field(tmp_path, key, brain, expected):
    path = write(tmp_path, brain=brain)
    with pytest.raises(ConfigError) as info:
        load_run_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and expected in message, message
    assert "\n" not in message and CANARY not in message


def test_a_key_pasted_into_api_key_env_is_refused_and_not_echoed(tmp_path):
    path = write(tmp_path, brain={**LLM, "api_key_env": CANARY})
    with pytest.raises(ConfigError) as info:
        load_run_config(path)
    message = str(info.value)
    assert "brain.api_key_env: must be the name of an environment variable" in message
    assert CANARY not in message and "canary" not in message


def test_missing_key_variable_is_a_config_error_naming_only_the_variable(tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    path = write(tmp_path, brain=LLM)
    with pytest.raises(ConfigError) as info:
        load_run_config(path)
    assert str(info.value) == (f"{path}: brain.api_key_env: environment variable {KEY_ENV} "
                               f"(the API key for http://127.0.0.1:8000/v1) is not set")


def test_with_brain_replaces_the_section_and_checks_the_key(tmp_path, key, monkeypatch):
    config = load_run_config(write(tmp_path))
    updated = with_brain(config, LLM, where="--llm-* flags")
    assert isinstance(updated.brain, LLMBrainConfig) and updated.load == config.load
    with pytest.raises(ConfigError, match=r"^--llm-\* flags: base_url: must be an http"):
        with_brain(config, {**LLM, "base_url": "localhost:8000"}, where="--llm-* flags")
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(ConfigError, match=rf"^--llm-\* flags: environment variable {KEY_ENV} "):
        with_brain(config, LLM, where="--llm-* flags")


def test_call_specs_carry_the_brain_section_but_not_the_key(tmp_path, key):
    from callers.transport import Target
    from orchestration.fleet import plan_specs

    config = load_run_config(write(tmp_path, brain=LLM))
    specs = plan_specs(config, Target("http://127.0.0.1:9/offer"))
    assert [s["brain"] for s in specs] == [config.brain.model_dump()] * 2
    assert specs[0]["brain"]["api_key_env"] == KEY_ENV
    assert CANARY not in json.dumps(specs)
    scripted = plan_specs(load_run_config(write(tmp_path)), Target("http://127.0.0.1:9/offer"))
    assert scripted[0]["brain"] == {"kind": "scripted"}


def test_shipped_llm_example_config_is_valid(monkeypatch):
    from pathlib import Path

    monkeypatch.setenv("OPENAI_API_KEY", CANARY)
    path = Path(__file__).parents[1] / "configs" / "llm.yaml"
    brain = load_run_config(path).brain
    assert isinstance(brain, LLMBrainConfig)
    assert brain.base_url.startswith("http://127.0.0.1:") and brain.api_key_env == "OPENAI_API_KEY"


def test_target_agent_state_channel_and_format_reach_every_call_spec(tmp_path):
    from callers.transport import Target
    from orchestration.fleet import plan_specs

    target = {"url": "http://127.0.0.1:9/api/offer",
              "agent_state": {"channel": "chat", "format": "rtvi"}}
    config = load_run_config(write(tmp_path, target=target))
    spec = plan_specs(config, config.target.to_target())[0]
    assert Target(**spec["target"]) == Target("http://127.0.0.1:9/api/offer",
                                              state_channel="chat", state_format="rtvi")


def test_unknown_agent_state_format_is_one_line_naming_the_field(tmp_path):
    path = write(tmp_path, target={"agent_state": {"format": "xml"}})
    with pytest.raises(ConfigError, match=r"target\.agent_state\.format") as e:
        load_run_config(path)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("transport, expected", [
    ("sip", "sip:restaurant_booking@127.0.0.1:5070"),
    ("pcm-ws", "ws://127.0.0.1:5070/pcm?flow=restaurant_booking"),
    ("webrtc", "http://127.0.0.1:5070/offer?flow=restaurant_booking"),
])
def test_each_call_asks_the_embedded_agent_for_its_scenarios_flow(tmp_path, transport, expected):
    from orchestration.fleet import plan_specs

    config = load_run_config(write(tmp_path, target={"url": "reference", "transport": transport},
                                   scenarios={"restaurant-booking": 1}))
    spec = plan_specs(config, config.target.to_target("http://127.0.0.1:5070"))[0]
    assert spec["target"]["url"] == expected  # over SIP the Request-URI's user names the flow
