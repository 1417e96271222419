"""Reliability of ``optimize``: each test reproduced a failure first (kept as a regression
test): staging beside the output that a kill -9 left for ever, ``log=`` instead of progress
events, messages naming CLI flags, "Operation on closed file" on a full disk, and "Directory
not empty" for the loser of two runs writing the same output."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import synth

import mtquery.io.optimize as mo
from mtquery import info as dataset_info
from mtquery.errors import DataError, UsageError
from mtquery.io.optimize import optimize
from mtquery.io.staging import STAGING
from mtquery.io.validate import validate

ROWS = 2000
RG = 250


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("raw") / "a.parquet"
    synth.write(synth.make_table(n=ROWS, dim=8, seed=5), path, row_group_size=RG)
    return path


def _hidden(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


# ---------------------------------------------------------------- 1. staging


KILL_AFTER_FIRST_ROW_GROUP = textwrap.dedent("""
    import os, signal, sys
    import mtquery.io.optimize as mo

    flush = mo._Writer._flush

    def killed(self, table):
        flush(self, table)
        os.kill(os.getpid(), signal.SIGKILL)  # kill -9 half-way through the output

    mo._Writer._flush = killed
    mo.optimize([sys.argv[1]], sys.argv[2], row_group_size=250, validate=False)
""")


def test_killed_run_leaves_no_data_and_the_next_run_sweeps_it(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    src = data / "a.parquet"
    synth.write(synth.make_table(n=ROWS, dim=8, seed=5), src, row_group_size=RG)
    proc = subprocess.run([sys.executable, "-c", KILL_AFTER_FIRST_ROW_GROUP, str(src),
                           str(data / "opt")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr
    assert not (data / "opt").exists()
    # 0.1 staged in data/.opt.tmp-PID; staging now lives in one hidden folder only
    assert _hidden(data) == [STAGING]
    assert dataset_info(str(data))["rows"] == ROWS  # staging is never read as data
    optimize([str(src)], data / "opt", row_group_size=RG)
    assert _hidden(data) == []  # the dead run's staging is swept, ours published
    assert validate([str(data / "opt")]).rows == ROWS


def test_failure_discards_staging(raw, tmp_path, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("broken")

    monkeypatch.setattr(mo, "_convert", boom)
    with pytest.raises(RuntimeError, match="broken"):
        optimize([str(raw)], tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_progress_events_with_totals_and_status_lines(raw, tmp_path):
    events = []
    manifest = optimize([str(raw)], tmp_path / "out", row_group_size=RG,
                        progress=events.append)
    rows = [e for e in events if e.task == "optimizing" and e.message is None]
    assert rows and all(e.total == ROWS and e.unit == "rows" for e in rows)
    assert sum(e.advance for e in rows) == ROWS
    messages = [e.message for e in events if e.message]
    assert any(m.startswith("validated 2,000 rows") for m in messages)
    assert any(m.startswith("optimized 2,000 rows") for m in messages)
    assert set(manifest["inputs"][0]) == {"path", "size", "mtime_ns", "rows"}
    assert manifest["inputs"][0]["rows"] == ROWS
    assert manifest["inputs"][0]["path"] == str(raw.resolve())


@pytest.mark.parametrize("kwargs, argument, words", [
    ({"row_group_size": 0}, "row_group_size", "row_group_size must be positive"),
    ({"rows_per_file": 10}, "rows_per_file", "rows_per_file must be at least row_group_size"),
    ({"memory_limit": "lots"}, "memory_limit", "memory_limit must look like 2GB"),
])
def test_messages_name_arguments(raw, tmp_path, kwargs, argument, words):
    with pytest.raises(UsageError) as err:
        optimize([str(raw)], tmp_path / "out", **kwargs)
    assert words in str(err.value) and "--" not in str(err.value)
    assert err.value.argument == argument
    assert not (tmp_path / "out").exists() and list(tmp_path.iterdir()) == []


def test_output_messages_name_arguments(raw, tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(UsageError) as err:
        optimize([str(raw)], tmp_path / "full")
    assert "output" in str(err.value) and "--" not in str(err.value)
    assert err.value.argument == "output"
    with pytest.raises(UsageError, match="holds the input") as err:
        optimize([str(raw)], raw.parent)
    assert "--" not in str(err.value)


# ---------------------------------------------------------------- 2. faults


def _no_space_at_second_row_group(monkeypatch):
    flush = mo._Writer._flush
    calls = []

    def full(self, table):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "Error writing bytes to file. Detail: [errno 28] "
                          "No space left on device")
        flush(self, table)

    monkeypatch.setattr(mo._Writer, "_flush", full)


def test_disk_full_is_one_line_and_publishes_nothing(raw, tmp_path, monkeypatch):
    _no_space_at_second_row_group(monkeypatch)
    out = tmp_path / "out"
    with pytest.raises(DataError) as err:
        optimize([str(raw)], out, row_group_size=RG)
    msg = str(err.value)
    assert msg.startswith(f"no space left on device writing {out}"), msg  # 0.1: closed file
    assert "\n" not in msg
    assert not out.exists() and list(tmp_path.iterdir()) == []


@pytest.fixture
def small_tmpfs(tmp_path):
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {proc.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_real_full_disk(small_tmpfs, tmp_path):
    src = tmp_path / "big.parquet"
    synth.write(synth.make_table(n=6000, dim=64, seed=2), src)  # ~2.7 MB of vectors
    out = small_tmpfs / "out"
    with pytest.raises(DataError) as err:
        optimize([str(src)], out, row_group_size=500)
    assert str(err.value).startswith(f"no space left on device writing {out}"), err.value
    assert "\n" not in str(err.value)
    assert list(small_tmpfs.iterdir()) == []  # nothing published, staging removed


def test_two_runs_same_output_loser_gets_one_line(raw, tmp_path, monkeypatch):
    out = tmp_path / "out"
    validate_stage = mo._validate
    winner = {}

    def other_run_finishes_first(root, progress):
        validate_stage(root, progress)
        if not winner:
            monkeypatch.setattr(mo, "_validate", validate_stage)
            winner["manifest"] = optimize([str(raw)], out, row_group_size=RG)

    monkeypatch.setattr(mo, "_validate", other_run_finishes_first)
    with pytest.raises(DataError) as err:
        optimize([str(raw)], out, row_group_size=RG)
    msg = str(err.value)
    assert msg.startswith(f"{out} was created by another run while this one was writing")
    assert "\n" not in msg and "Directory not empty" not in msg
    # the winner's output is intact, the loser's staging gone
    assert json.loads((out / mo.MANIFEST).read_text()) == winner["manifest"]
    assert validate([str(out)]).ok
    assert _hidden(tmp_path) == []


def test_vectors_without_direction_are_kept_and_noted(tmp_path):
    """validate fails zero / NaN vectors; optimize copies them as they are (knn skips them,
    cosine_distance gives NULL) and says so instead of discarding the whole output."""
    from mtquery.standard.schema import embedding_array

    t = synth.make_table(n=300, dim=8, seed=4)
    m = synth.vectors(t).copy()
    m[10] = 0.0
    m[20, 2] = float("nan")
    t = t.set_column(t.schema.get_field_index("embedding"), "embedding", embedding_array(m))
    src = synth.write(t, tmp_path / "in.parquet")
    events = []
    manifest = optimize([src], tmp_path / "out", row_group_size=100, progress=events.append)
    assert manifest["rows"] == 300
    note = [e.message for e in events if e.message and e.message.startswith("validated")]
    assert note and "vectors: 1 (FAIL)" in note[0]
    checks = validate([str(tmp_path / "out")]).checks
    assert checks["vectors"].failures == 1 and checks["zero_vectors"].failures == 1
