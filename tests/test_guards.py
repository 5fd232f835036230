"""Resource guards before a run starts: disk for recordings, file descriptors, hosts vs CPUs."""

import resource
import shutil
import wave

import numpy as np
import pytest
import yaml

import orchestration.run as run_module
from callers.audio import STT_RATE, write_stereo_wav
from callers.errors import ConfigError
from callers.transport import Target
from orchestration.cli import main
from orchestration.config import RunConfig
from orchestration.fleet import plan_specs
from orchestration.guards import (FDS_BASE, FDS_PER_CALL, calls_per_process, check_before_start,
                                  check_hosts, disk_guard, fd_guard, fds_needed, hosts_guard,
                                  recording_bytes)

GB = 1_000_000_000


def config(**fleet) -> RunConfig:
    return RunConfig.model_validate({
        "personas": {"cooperative-john": 1},
        "load": {"total_calls": 10, "max_concurrency": 4, "calls_per_second": 1},
        "fleet": fleet})


# --- disk ----------------------------------------------------------------------------------


def test_recording_estimate_matches_the_wav_callfleet_writes(tmp_path):
    """Bytes per second from a real recording, not from a figure copied into the guard."""
    path = tmp_path / "call.wav"
    second = np.zeros(STT_RATE, dtype=np.int16)
    write_stereo_wav(path, second, second[: STT_RATE // 2], STT_RATE)
    with wave.open(str(path)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (2, 2, 16_000)
    assert path.stat().st_size == recording_bytes(1, 1.0)
    assert recording_bytes(1, 60.0) - 44 == 3_840_000  # 3.84 MB per call-minute
    assert recording_bytes(1000, 240.0) == 1000 * (240 * 64_000 + 44)


def test_disk_guard_fails_when_the_recordings_cannot_fit_and_offers_no_audio():
    guard = disk_guard(needed=2 * GB, free=GB, where="/runs", how="10 calls")
    assert guard.level == "fail"
    assert "2.0 GB" in guard.line and "1.0 GB free" in guard.line
    assert "--no-audio" in guard.line and "\n" not in guard.line


@pytest.mark.parametrize(("needed", "level"), [
    (GB // 2, "ok"), (int(0.8 * GB), "ok"), (int(0.81 * GB), "warn"), (GB, "warn"),
    (GB + 1, "fail")])
def test_disk_guard_warns_above_80_percent_of_free_space(needed, level):
    assert disk_guard(needed, GB, "/runs", "x").level == level


def test_disk_is_measured_on_the_nearest_existing_parent_of_out(tmp_path, monkeypatch, capsys):
    asked = []

    def usage(path):
        asked.append(path)
        return shutil._ntuple_diskusage(100 * GB, 0, 100 * GB)

    monkeypatch.setattr(shutil, "disk_usage", usage)
    check_before_start(config(), tmp_path / "not" / "yet")
    assert asked == [tmp_path]
    out = capsys.readouterr().out
    assert "disk: recordings up to 154 MB" in out  # 10 calls x 240 s x 64 kB/s
    assert "240 s (fleet.max_call_s)" in out


def test_no_audio_and_null_calls_need_no_space_for_recordings(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10, 10, 0))
    check_before_start(config(audio=False), tmp_path)
    check_before_start(config(null_call_s=1.0), tmp_path)
    with pytest.raises(ConfigError, match="--no-audio"):
        check_before_start(config(), tmp_path)
    out = capsys.readouterr().out
    assert "recordings off (--no-audio)" in out and "null calls write no recordings" in out


# --- file descriptors ----------------------------------------------------------------------


def test_fd_guard_passes_when_the_soft_limit_is_enough():
    guard = fd_guard(calls_at_once=10, soft=1024, hard=4096)
    assert guard.level == "ok" and guard.raise_fds_to is None
    assert fds_needed(10) == FDS_BASE + 10 * FDS_PER_CALL


def test_fd_guard_raises_the_soft_limit_when_the_hard_limit_allows():
    guard = fd_guard(calls_at_once=400, soft=1024, hard=65536)
    assert guard.level == "ok" and guard.raise_fds_to == fds_needed(400) > 1024
    assert "raised the soft limit from 1,024" in guard.line
    assert fd_guard(400, 1024, resource.RLIM_INFINITY).raise_fds_to == fds_needed(400)


def test_fd_guard_fails_when_even_the_hard_limit_is_too_low():
    guard = fd_guard(calls_at_once=1000, soft=1024, hard=4096)
    assert guard.level == "fail" and guard.raise_fds_to is None
    assert "4,096" in guard.line and "ulimit -Hn" in guard.line


def test_the_embedded_agent_holds_every_call_hosts_share_them():
    assert calls_per_process(100, hosts=8, embedded_agent=True) == 100
    assert calls_per_process(100, hosts=8, embedded_agent=False) == 13
    assert calls_per_process(3, hosts=8, embedded_agent=False) == 1


def test_check_before_start_sets_the_raised_soft_limit(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(GB, 0, GB))
    monkeypatch.setattr(resource, "getrlimit", lambda which: (64, 100_000))
    set_to = []
    monkeypatch.setattr(resource, "setrlimit", lambda which, limits: set_to.append(limits))
    check_before_start(config(audio=False), tmp_path)  # embedded agent: 4 calls in one process
    assert set_to == [(fds_needed(4), 100_000)]
    assert "raised the soft limit from 64 to" in capsys.readouterr().out


def test_check_before_start_fails_when_the_hard_limit_is_too_low(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(GB, 0, GB))
    monkeypatch.setattr(resource, "getrlimit", lambda which: (64, 128))
    monkeypatch.setattr(resource, "setrlimit", lambda *a: pytest.fail("must not set"))
    with pytest.raises(ConfigError, match="hard limit is 128"):
        check_before_start(config(), tmp_path)


# --- hosts ---------------------------------------------------------------------------------


def test_hosts_guard_fails_when_more_hosts_than_cpus_are_asked():
    guard = hosts_guard(asked=9, cpus=8.0, embedded_agent=False)
    assert guard.level == "fail" and "fleet.hosts is 9" in guard.line and "8 CPUs" in guard.line


@pytest.mark.parametrize(("asked", "embedded", "level"), [
    (None, True, "ok"), (8, False, "ok"), (4, True, "ok"), (8, True, "warn"), (1, True, "ok")])
def test_hosts_guard_warns_when_the_embedded_agent_gets_no_core(asked, embedded, level):
    assert hosts_guard(asked, 8.0, embedded).level == level


def test_check_hosts_reads_the_cpus_ray_reports(monkeypatch):
    import ray

    monkeypatch.setattr(ray, "is_initialized", lambda: True)
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 2.0})
    check_hosts(config(hosts=2))
    with pytest.raises(ConfigError, match="fleet.hosts is 3 but the Ray cluster has 2 CPUs"):
        check_hosts(config(hosts=3))


# --- wiring: --no-audio and the CLI --------------------------------------------------------


def test_no_audio_reaches_every_call_spec():
    target = Target("http://127.0.0.1:9/offer")
    assert all(s["audio"] for s in plan_specs(config(), target))
    assert not any(s["audio"] for s in plan_specs(config(audio=False), target))


@pytest.fixture
def nothing_starts(monkeypatch):
    """run_config's parts that start things; each records that it was reached."""
    reached = []

    def fail_agent(*args):
        reached.append("reference_agent")
        raise ConfigError("stopped: the test starts no agent")

    monkeypatch.setattr(run_module, "start_ray", lambda address: reached.append("start_ray"))
    monkeypatch.setattr(run_module, "reference_agent", fail_agent)
    monkeypatch.setattr(run_module, "Fleet", lambda *a, **k: pytest.fail("a call was placed"))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    return reached


def write_config(tmp_path, **fleet):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({
        "personas": {"cooperative-john": 1},
        "load": {"total_calls": 50, "max_concurrency": 5, "calls_per_second": 1},
        "fleet": fleet}))
    return path


def test_run_with_too_little_disk_exits_2_with_one_line_before_anything_starts(
        tmp_path, monkeypatch, capsys, nothing_starts):
    monkeypatch.setattr(shutil, "disk_usage",
                        lambda p: shutil._ntuple_diskusage(GB, GB - 5_000_000, 5_000_000))
    out = tmp_path / "runs"
    assert main(["run", str(write_config(tmp_path)), "--out", str(out)]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("callfleet: error: disk: the recordings may need 768 MB")
    assert "5.0 MB free" in lines[0] and "--no-audio" in lines[0]
    assert nothing_starts == [] and not out.exists()


def test_run_with_no_audio_passes_the_disk_guard_and_goes_on(
        tmp_path, monkeypatch, capsys, nothing_starts):
    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(GB, GB, 0))
    assert main(["run", str(write_config(tmp_path)), "--out", str(tmp_path / "runs"),
                 "--no-audio"]) == 2
    captured = capsys.readouterr()
    assert "recordings off (--no-audio)" in captured.out
    assert nothing_starts == ["start_ray", "reference_agent"]  # past every guard
    assert "stopped: the test starts no agent" in captured.err


def test_more_hosts_than_cpus_exit_2_before_the_agent_loads_its_models(
        tmp_path, monkeypatch, capsys, nothing_starts):
    import ray

    monkeypatch.setattr(ray, "is_initialized", lambda: True)
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 2.0})
    assert main(["run", str(write_config(tmp_path, hosts=4)), "--out",
                 str(tmp_path / "runs"), "--no-audio"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("callfleet: error: hosts: fleet.hosts is 4") and "\n" not in err
    assert nothing_starts == ["start_ray"]


def test_demo_no_audio_turns_recordings_off(monkeypatch):
    configs = []
    monkeypatch.setattr(run_module, "run_config",
                        lambda config, out, **_: configs.append(config) or 0)
    assert main(["demo", "--calls", "2", "--no-audio"]) == 0
    assert main(["demo", "--calls", "2"]) == 0
    assert [c.fleet.audio for c in configs] == [False, True]


def test_audio_field_in_a_run_config_is_strict(tmp_path):
    from orchestration.config import load_run_config

    assert load_run_config(write_config(tmp_path, audio=False)).fleet.audio is False
    with pytest.raises(ConfigError, match="fleet.audio"):
        load_run_config(write_config(tmp_path, audio="no"))
