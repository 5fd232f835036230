"""Persona files: the shipped ones load, and every kind of mistake is one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest

from callers.errors import ConfigError
from callers.persona import (PERSONAS_DIR, Persona, find_persona, list_personas, load_persona,
                             resolve_persona, traits)

GOOD = """\
id: test-john
display_name: John Smith
goal: Ask for a refund of 250 dollars
facts:
  first_name: John
  last_name: Smith
  amount: 250
  reason: a refund for a double charge
voice: {speaking_rate: 1.0, variant: 0}
temperament: {patience: 0.7, verbosity: 0.3}
behaviours: {}
environment: {noise: none, snr_db: 30}
line: {codec: opus, band_limit: false, packet_loss_pct: 0}
"""


def write(tmp_path: Path, text: str, name: str = "x.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def error_for(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_persona(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    return message


def test_shipped_personas_all_load_with_distinct_ids_and_voices():
    personas = list_personas()
    assert len(personas) >= 3
    assert len({p.id for p in personas}) == len(personas)
    assert len({(p.voice.speaking_rate, p.voice.variant) for p in personas}) == len(personas)
    for p in personas:  # each carries its own card-dispute case
        assert p.facts["first_name"] and p.facts["last_name"] and p.facts["reason"]
        assert p.facts["amount"] > 0


def test_shipped_persona_file_names_match_their_ids():
    for path in PERSONAS_DIR.glob("*.yaml"):
        assert load_persona(path).id == path.stem


def test_good_file_loads_with_its_facts_as_written_and_defaults_filled(tmp_path):
    persona = load_persona(write(tmp_path, GOOD))
    assert isinstance(persona, Persona)
    assert persona.facts["amount"] == 250 and persona.facts["first_name"] == "John"
    assert persona.behaviours.barge_in.probability == 0.0
    assert persona.voice.model is None


def test_unknown_field_is_named(tmp_path):
    path = write(tmp_path, GOOD + "colour: red\n")
    assert error_for(path) == f"{path}: colour: unknown field"


def test_unknown_nested_field_is_named_with_its_path(tmp_path):
    path = write(tmp_path, GOOD.replace("snr_db: 30", "snr: 30"))
    assert error_for(path) == f"{path}: environment.snr: unknown field"


def test_bad_fact_name_is_named(tmp_path):
    path = write(tmp_path, GOOD.replace("  amount: 250\n", "  Amount!: 250\n"))
    assert error_for(path).startswith(f"{path}: facts.Amount!.[key]: ")


def test_a_fact_the_scenario_needs_is_checked_against_its_type_when_bound(tmp_path):
    from callers.scenario import facts_for, resolve_scenario

    persona = load_persona(write(tmp_path, GOOD.replace("amount: 250", "amount: lots")))
    with pytest.raises(ConfigError, match=r"facts\.amount: expected an amount"):
        facts_for(resolve_scenario("card-dispute"), persona.facts, "persona test-john")
    missing = load_persona(write(tmp_path, GOOD.replace("  amount: 250\n", ""), "b.yaml"))
    with pytest.raises(ConfigError, match=r"fact 'amount' has no value, and persona test-john"):
        facts_for(resolve_scenario("card-dispute"), missing.facts, "persona test-john")


def test_out_of_range_snr_gives_the_range_and_the_value(tmp_path):
    path = write(tmp_path, GOOD.replace("snr_db: 30", "snr_db: 99"))
    assert error_for(path) == f"{path}: environment.snr_db: must be between -10 and 60, got 99"


def test_out_of_range_behaviour_probability_is_named(tmp_path):
    bad = "behaviours: {barge_in: {probability: 1.5}}"
    path = write(tmp_path, GOOD.replace("behaviours: {}", bad))
    assert error_for(path) == (
        f"{path}: behaviours.barge_in.probability: must be between 0 and 1, got 1.5")


def test_speaking_rate_bounds_are_exclusive(tmp_path):
    path = write(tmp_path, GOOD.replace("speaking_rate: 1.0", "speaking_rate: 2.0"))
    assert "voice.speaking_rate: must be strictly between 0.5 and 2" in error_for(path)


def test_unknown_noise_kind_lists_the_choices(tmp_path):
    path = write(tmp_path, GOOD.replace("noise: none", "noise: rain"))
    message = error_for(path)
    assert "environment.noise: must be one of" in message and "'babble'" in message
    assert message.endswith("got 'rain'")


def test_id_must_be_a_slug(tmp_path):
    path = write(tmp_path, GOOD.replace("id: test-john", "id: Test John"))
    assert "id: must be a slug" in error_for(path)


def test_missing_file_is_a_config_error(tmp_path):
    path = tmp_path / "nope.yaml"
    assert "cannot read persona file" in error_for(path)


def test_bad_yaml_gives_the_line(tmp_path):
    path = write(tmp_path, GOOD + "  - oops: [\n")
    assert "invalid YAML at line" in error_for(path)


def test_empty_file_is_a_config_error(tmp_path):
    assert "empty" in error_for(write(tmp_path, ""))


def test_several_errors_report_the_first_and_count_the_rest(tmp_path):
    path = write(tmp_path, GOOD.replace("snr_db: 30", "snr_db: 99") + "colour: red\n")
    assert error_for(path).endswith("(and 1 more)")


def test_find_persona_by_id_and_unknown_id_lists_known_ones(tmp_path):
    write(tmp_path, GOOD, "a.yaml")
    assert find_persona("test-john", tmp_path).facts["last_name"] == "Smith"
    with pytest.raises(ConfigError, match=r"unknown persona 'nobody' .*known: test-john"):
        find_persona("nobody", tmp_path)


def test_duplicate_ids_in_a_directory_are_rejected(tmp_path):
    write(tmp_path, GOOD, "a.yaml")
    write(tmp_path, GOOD, "b.yaml")
    with pytest.raises(ConfigError, match="already used"):
        list_personas(tmp_path)


def test_resolve_persona_takes_an_id_or_a_path(tmp_path):
    assert resolve_persona("cooperative-john").id == "cooperative-john"
    assert resolve_persona(str(write(tmp_path, GOOD))).id == "test-john"


@pytest.mark.parametrize("field, bad, expected", [
    ("behaviours: {barge_in: {after_s: 0.1}}", "behaviours.barge_in.after_s",
     "must be between 0.2 and 10, got 0.1"),
    ("behaviours: {hesitation: {pause_ms: 5000}}", "behaviours.hesitation.pause_ms",
     "must be between 100 and 3000, got 5000"),
    ("behaviours: {backchannel: {probability: -0.1}}", "behaviours.backchannel.probability",
     "must be between 0 and 1, got -0.1"),
])
def test_out_of_range_behaviour_timing_is_named(tmp_path, field, bad, expected):
    path = write(tmp_path, GOOD.replace("behaviours: {}", field))
    assert error_for(path) == f"{path}: {bad}: {expected}"


def test_reply_time_out_of_range_is_named(tmp_path):
    path = write(tmp_path, GOOD.replace("verbosity: 0.3}", "verbosity: 0.3, reply_after_ms: 100}"))
    assert error_for(path) == (
        f"{path}: temperament.reply_after_ms: must be between 500 and 5000, got 100")


def test_missing_voice_model_file_is_named(tmp_path):
    path = write(tmp_path, GOOD.replace("voice: {", f"voice: {{model: {tmp_path}/nope.onnx, "))
    assert error_for(path) == (
        f"{path}: voice.model: Piper model file not found: {tmp_path}/nope.onnx")


def test_shipped_personas_cover_the_caller_kinds():
    personas = {p.id: p for p in list_personas()}
    assert len(personas) == 10  # `callfleet demo --calls 10` calls each one once

    def some(check) -> bool:
        return any(check(p) for p in personas.values())

    assert some(lambda p: traits(p) == "cooperative")
    assert some(lambda p: p.behaviours.barge_in.probability >= 0.5)
    assert some(lambda p: p.behaviours.backchannel.probability >= 0.5)
    assert some(lambda p: p.behaviours.hesitation.probability >= 0.5)
    assert some(lambda p: p.behaviours.silence.probability == 1.0)
    assert some(lambda p: p.voice.speaking_rate >= 1.3)
    assert some(lambda p: len(p.asides) >= 2 and p.temperament.verbosity >= 0.8)
    assert some(lambda p: p.environment.noise == "street" and p.environment.snr_db <= 15)
    assert some(lambda p: p.line.codec == "pcmu" and p.line.band_limit
                and p.line.packet_loss_pct == 2)
