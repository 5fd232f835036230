"""callfleet installs from its wheel, not only from a checkout (configs/cluster/rayjob.yaml's
`pip install callfleet` on every node): every sub-package and the shipped personas and
scenarios are in it, and it runs from site-packages."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
PACKAGES = ("callers", "orchestration", "evaluation", "reference_agent")
DATA = ("personas", "scenarios")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".git", ".venv*", "runs", "build", "*.egg-info", "__pycache__", ".pytest_cache",
        "benchmarks", "tests"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "--quiet", "--wheel-dir", str(tmp / "dist"), str(src)],
                   check=True, capture_output=True, timeout=120)
    return next((tmp / "dist").glob("callfleet-*.whl"))


def test_the_wheel_holds_every_module_persona_and_scenario(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {p.relative_to(ROOT).as_posix()
                for top in PACKAGES for p in (ROOT / top).rglob("*.py")}
    expected |= {p.relative_to(ROOT).as_posix() for top in DATA for p in (ROOT / top).glob("*.yaml")}
    assert expected - names == set()
    assert not {n for n in names if n.startswith(("tests/", "benchmarks/"))}


def test_the_installed_wheel_runs_outside_the_checkout(wheel, tmp_path):
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--quiet",
                    "--target", str(site), str(wheel)], check=True, capture_output=True,
                   timeout=120)
    probe = ("import callers, callers.speech.stt, callers.transports.sip, orchestration.cli\n"
             "from callers.persona import list_personas\n"
             "from callers.scenario import list_scenarios\n"
             "print(callers.__file__, len(list_personas()), len(list_scenarios()))")
    # the wheel's modules come first on the path: the checkout's editable install is behind it
    env = {**os.environ, "PYTHONPATH": str(site)}
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, check=True,
                         capture_output=True, text=True, timeout=120).stdout.split()
    assert Path(out[0]).is_relative_to(site)
    assert int(out[1]) == len(list((ROOT / "personas").glob("*.yaml")))
    assert int(out[2]) == len(list((ROOT / "scenarios").glob("*.yaml")))
