"""Cold start of a one-shot ``mtquery knn --lat --lon`` on the bundled demo: this checkout
against an earlier commit (default: 68955df, mtquery 0.1 before the "One shape" work),
measured in the same run.

The baseline is installed with ``pip install --no-deps --target`` into benchmarks/.cache and
run with the same interpreter and dependencies. Prints the median wall time of N runs per
version, and the import-time breakdown (``python -X importtime``) by top-level package.

    python benchmarks/cold_start.py [--ref 68955df] [--runs 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "benchmarks" / ".cache"
#: run from a folder without a ./mtquery: `python -m` puts the working directory first on
#: sys.path, which would run this checkout in place of the baseline
NEUTRAL = tempfile.gettempdir()
ARGS = ["knn", "--lat", "37.6803", "--lon", "-75.548", "--k", "5", "--format", "json"]


def install_ref(ref: str) -> Path:
    target = CACHE / f"coldstart-{ref}"
    if (target / "mtquery").is_dir():
        return target
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(src), ref],
                       check=True, capture_output=True)
        try:
            subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                            "--disable-pip-version-check", "--target", str(target), str(src)],
                           check=True)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(src)],
                           capture_output=True)
    return target


def env_for(path: Path | None, cache: Path) -> dict:
    env = {**os.environ, "MTQUERY_CACHE": str(cache), "COLUMNS": "120"}
    env.pop("MTQUERY_DATASET", None)
    if path is not None:
        env["PYTHONPATH"] = str(path)
    return env


def wall(env: dict, runs: int) -> tuple[list[float], list[float]]:
    """(wall seconds, CPU seconds) of each run; CPU time is what a busy machine's queueing
    does not inflate."""
    import resource

    cmd = [sys.executable, "-m", "mtquery", *ARGS]
    subprocess.run(cmd, env=env, check=True, capture_output=True, cwd=NEUTRAL)  # warm caches
    times, cpu = [], []
    for _ in range(runs):
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, capture_output=True, cwd=NEUTRAL)
        times.append(time.perf_counter() - t0)
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
    return times, cpu


def import_breakdown(env: dict) -> dict[str, float]:
    """Cumulative import time (ms) of each top-level import, grouped by package."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "mtquery", *ARGS],
                          env=env, check=True, capture_output=True, text=True, cwd=NEUTRAL)
    out: dict[str, float] = defaultdict(float)
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        parts = line.split("|")
        try:
            cumulative = int(parts[1])
        except ValueError:
            continue
        name = parts[2]
        if name.startswith(" ") and not name.startswith("  "):  # top level: one space
            out[name.strip().split(".")[0]] += cumulative / 1000
    return dict(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ref", default="68955df")
    ap.add_argument("--runs", type=int, default=7)
    a = ap.parse_args()
    old = install_ref(a.ref)
    # the baseline is installed compiled (pip writes .pyc); compile this checkout too, or a
    # PYTHONDONTWRITEBYTECODE environment makes every run of it parse its sources again
    subprocess.run([sys.executable, "-m", "compileall", "-q", *(str(ROOT / d) for d in (
        "mtquery", "generate", "eval", "sql"))], check=True)
    with tempfile.TemporaryDirectory() as c1, tempfile.TemporaryDirectory() as c2:
        envs = {f"before ({a.ref})": env_for(old, Path(c1)), "after (this checkout)":
                env_for(None, Path(c2))}
        rows = {name: (wall(env, a.runs), import_breakdown(env)) for name, env in envs.items()}
    first = next(iter(rows.values()))[0]
    base, base_cpu = statistics.median(first[0]), statistics.median(first[1])
    print(f"\ncold `mtquery {' '.join(ARGS)}` on the demo, median of {a.runs} runs, "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}\n")
    print(f"{'version':24s} {'wall s':>7s} {'min s':>6s} {'ratio':>6s} {'CPU s':>6s} "
          f"{'ratio':>6s}  imports (ms)")
    for name, ((times, cpu), imports) in rows.items():
        med, mcpu = statistics.median(times), statistics.median(cpu)
        top = sorted(imports.items(), key=lambda kv: -kv[1])[:5]
        print(f"{name:24s} {med:7.3f} {min(times):6.3f} {med / base:5.2f}x {mcpu:6.3f} "
              f"{mcpu / base_cpu:5.2f}x  " + ", ".join(f"{k} {v:.0f}" for k, v in top))
    print("\n(imports: cumulative time of each top-level import, by package; the rest is "
          "DuckDB start, extension load, the query and output)")


if __name__ == "__main__":
    main()
