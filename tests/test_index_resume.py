"""Issue 23: a killed ``index build`` goes on from its last finished chunk and gives the
answers of an uninterrupted build; nothing partial is ever published. One kill at a chosen
point (after two chunks) and one at a random point drawn by the fault benchmark's trial."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

pytest.importorskip("faiss")

# the fault benchmark's module: the ``faults`` fixture of conftest.py


def test_killed_after_two_chunks_resumes(faults, tmp_path):
    case = faults.index_case(tmp_path, rows=60_000)
    env = faults._env(tmp_path)
    stats = faults.measure(case, env, retries=0, wait_s=0)  # the reference answers
    case.reset()
    progress = case.output.parent / f".{case.output.name}.partial" / "work" / "progress.json"
    proc = subprocess.Popen([sys.executable, "-m", "mtquery", *case.argv], env=env,
                            cwd=faults.ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    units = 0
    while time.time() < deadline and proc.poll() is None:
        try:
            units = json.loads(progress.read_text())["units"]
        except (OSError, ValueError, KeyError):
            units = 0
        if units >= 2:
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait()
    assert units >= 2, "the build finished before two chunks could be seen"
    assert not case.output.exists()  # nothing published by the killed build
    rerun = faults._run(case.argv, env)
    assert rerun.returncode == 0, rerun.stderr
    manifest = json.loads((case.output / "manifest.json").read_text())
    assert manifest["resumed"] is True
    assert case.check(True) is None  # loads, all rows, the uninterrupted build's answers
    assert faults.staging_paths(tmp_path) == []
    assert not progress.parent.parent.exists()  # the work folder is gone once published
    assert stats.full_s > 0


def test_killed_at_random_point(faults, tmp_path):
    case = faults.index_case(tmp_path, rows=60_000)
    env = faults._env(tmp_path)
    stats = faults.measure(case, env, retries=0, wait_s=0)
    stats.full_s = stats.startup_s + 0.8 * (stats.full_s - stats.startup_s)  # kill before end
    faults.trial(case, stats, random.Random(7), env)
    assert stats.runs == 1 and stats.partial == 0 and stats.rerun_failures == 0, stats.notes
    assert stats.leftover == 0, stats.notes
