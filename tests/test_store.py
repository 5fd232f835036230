"""The run directory: durable per-call appends, atomic summary, tolerant reading."""

import json
import re

import pytest

from callers.record import CallRecord
from orchestration.store import RunStore, new_run_id, read_records


def test_creates_run_dir_with_audio_subdir(tmp_path):
    store = RunStore(tmp_path / "runs" / "r1")
    assert (tmp_path / "runs" / "r1" / "audio").is_dir()
    assert store.audio_path("call-7") == tmp_path / "runs" / "r1" / "audio" / "call-7.wav"
    store.close()


def test_append_is_on_disk_before_close(tmp_path):
    store = RunStore(tmp_path)
    store.append(CallRecord(call_id="c1", persona="p", seed=3, status="completed"))
    store.append({"call_id": "c2", "persona": "p", "seed": 4})
    # Read through a separate handle while the store is still open.
    lines = (tmp_path / "calls.jsonl").read_text().splitlines()
    assert [json.loads(x)["call_id"] for x in lines] == ["c1", "c2"]
    assert json.loads(lines[0])["seed"] == 3
    store.close()


def test_append_writes_strict_json_even_with_nan(tmp_path):
    with RunStore(tmp_path) as store:
        store.append({"call_id": "c1", "network": {"rtt_ms": float("nan")}})
    records, warnings = read_records(tmp_path / "calls.jsonl")
    assert warnings == []
    assert records[0]["network"]["rtt_ms"] is None


def test_write_summary_replaces_atomically_and_leaves_no_temp_file(tmp_path):
    with RunStore(tmp_path) as store:
        store.write_summary({"run_id": "r", "n": 1})
        store.write_summary({"run_id": "r", "n": 2})
    assert json.loads((tmp_path / "summary.json").read_text()) == {"run_id": "r", "n": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audio", "calls.jsonl", "summary.json"]


def test_read_records_skips_garbage_middle_and_truncated_last_line_with_line_numbers(tmp_path):
    path = tmp_path / "calls.jsonl"
    good = [json.dumps({"call_id": f"c{i}"}) for i in range(3)]
    path.write_text(good[0] + "\n" + "garbage{{\n" + good[1] + "\n" + good[2] + "\n"
                    + '{"call_id": "c3", "sta')
    records, warnings = read_records(path)
    assert [r["call_id"] for r in records] == ["c0", "c1", "c2"]
    assert warnings == [
        "calls.jsonl:2: not valid JSON (truncated line?)",
        "calls.jsonl:5: not valid JSON (truncated line?)",
    ]


def test_read_records_rejects_non_object_lines_and_ignores_blank_ones(tmp_path):
    path = tmp_path / "calls.jsonl"
    path.write_text('{"call_id": "a"}\n\n[1, 2]\n')
    records, warnings = read_records(path)
    assert records == [{"call_id": "a"}]
    assert warnings == ["calls.jsonl:3: not a JSON object"]


def test_read_records_of_missing_file_is_empty_with_a_warning(tmp_path):
    assert read_records(tmp_path / "calls.jsonl") == ([], ["calls.jsonl: not found"])


def test_audio_path_refuses_ids_that_escape_the_audio_dir(tmp_path):
    with RunStore(tmp_path) as store, pytest.raises(ValueError):
        store.audio_path("../evil")


def test_new_run_id_is_utc_time_plus_random_suffix():
    ids = [new_run_id() for _ in range(10)]
    assert all(re.fullmatch(r"\d{8}-\d{6}-[0-9a-f]{4}", i) for i in ids)
    assert len(set(ids)) > 1  # the suffix keeps same-second runs apart
