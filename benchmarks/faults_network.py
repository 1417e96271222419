"""Network-fault rows of ``benchmarks/faults.py``: ``info``, a region ``knn`` and ``extract``
of a remote dataset (a synthetic set in 3 files behind tests/rangeserver.py on 127.0.0.1),
each run as ``python -m mtquery`` under one injected fault kind and compared with a clean
run of the same command:

- ``500``: every 5th request answered HTTP 500;  ``429``: the same with 429 (Retry-After 0);
- ``cut``: one answer's body cut halfway (the connection closed);
- ``stall``: one answer stalled halfway for 10 s ($MTQUERY_HTTP_TIMEOUT=2: tried again);
- ``mixed``: every 5th request 500, one cut and one 10 s stall (the acceptance case);
- ``ctrl-c``: SIGINT while a read stalls (extract: mtquery's reads; knn: DuckDB's); a
  hang is a command still running 1 s after the signal.

Columns: runs, faults injected (counted by the server), wrong answers (output not equal to
the clean run, exit 0), partial outputs (an extract directory left by a failed or
interrupted run, or one that differs), hangs (past the deadline, or Ctrl-C not honoured
within 1 s), failed (non-zero exit where success was due). Wrong answers, partial outputs
and hangs must be 0.

    python benchmarks/faults_network.py [N=3]      # or: python benchmarks/faults.py --only network
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FAULTS = {"500": dict(fail_every=5, cuts=0), "429": dict(fail_every=5, cuts=0, status=429),
          "cut": dict(fail_every=None, cuts=1), "stall": dict(fail_every=None, cuts=0,
                                                             stalls=1, stall_s=10),
          "mixed": dict(fail_every=5, cuts=1, stalls=1, stall_s=10)}
DEADLINE_S = 120.0
HEADER = ("command / fault", "runs", "faults injected", "wrong answers", "partial outputs",
          "hangs", "failed", "s")


@dataclass
class Row:
    name: str
    runs: int = 0
    injected: int = 0
    wrong: int = 0
    partial: int = 0
    hangs: int = 0
    failed: int = 0
    seconds: float = 0.0

    def cells(self) -> tuple:
        return (self.name, self.runs, self.injected, self.wrong, self.partial, self.hangs,
                self.failed, f"{self.seconds:.0f}")


def _dataset(root: Path, rows: int) -> list[str]:
    import pyarrow.parquet as pq

    from mtquery.synth import SynthSpec, write

    whole = root / "whole.parquet"
    write(whole, SynthSpec(rows=rows, dim=32, seed=21))
    table = pq.read_table(whole).sort_by("centre_lat")  # latitude bands, as released sets
    whole.unlink()
    names = []
    per = -(-rows // 3)
    for i in range(3):
        name = f"part_{i:05d}.parquet"
        pq.write_table(table.slice(i * per, per), root / name, row_group_size=2_000)
        names.append(name)
    return names


def _env(work: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "MTQUERY_CACHE": str(work / "cache"),
            "MTQUERY_HTTP_TIMEOUT": "2"}


def _run(argv: list[str], env: dict[str, str]) -> tuple[int | None, str, str]:
    try:
        out = subprocess.run([sys.executable, "-m", "mtquery", *argv], capture_output=True,
                             text=True, env=env, timeout=DEADLINE_S)
    except subprocess.TimeoutExpired:
        return None, "", "timeout"
    return out.returncode, out.stdout, out.stderr


def _extracted(out: Path) -> list | None:
    import pyarrow.parquet as pq

    if not out.exists():
        return None
    t = pq.read_table(out, columns=["unique_id", "embedding"])
    return sorted(zip(t.column("unique_id").to_pylist(), t.column("embedding").to_pylist()))


def _commands(urls: list[str], work: Path, lat: float, lon: float) -> dict[str, list[str]]:
    ds = ",".join(urls)
    box = f"{lon - 5},{lat - 5},{lon + 5},{lat + 5}"
    return {"info": ["info", ds, "--format", "json"],
            "knn": ["knn", "-d", ds, "--lat", str(lat), "--lon", str(lon), "--bbox", box,
                    "-k", "50", "--format", "csv"],
            "extract": ["extract", ds, "--bbox", box, "-o", str(work / "out"), "-q"]}


def _interrupt(argv: list[str], env: dict[str, str], srv) -> tuple[bool, int | None, float]:
    """(reached a stall, exit code, seconds from SIGINT to exit)."""
    proc = subprocess.Popen([sys.executable, "-m", "mtquery", *argv], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + DEADLINE_S
    while srv.injected["stall"] == 0 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if proc.poll() is not None or srv.injected["stall"] == 0:
        proc.kill()
        proc.wait()
        return False, proc.returncode, 0.0
    time.sleep(0.3)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    return True, proc.returncode, time.monotonic() - t0


def run(n: int = 3, rows: int = 30_000, work: Path | None = None) -> list[tuple]:
    """The rows of the table (``HEADER``)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from rangeserver import RangeServer

    own = work is None
    work = Path(tempfile.mkdtemp(prefix="mtquery-netfaults-")) if work is None else work
    www = work / "www"
    www.mkdir(parents=True, exist_ok=True)
    names = _dataset(www, rows)
    env = _env(work)
    out: list[Row] = []
    try:
        with RangeServer(www) as srv:
            import pyarrow.parquet as pq

            urls = [srv.url(nm) for nm in names]
            t = pq.read_table(www / names[1], columns=["centre_lat", "centre_lon"]).slice(7, 1)
            lat, lon = t.column("centre_lat")[0].as_py(), t.column("centre_lon")[0].as_py()
            cmds = _commands(urls, work, lat, lon)
            clean: dict[str, object] = {}
            for name, argv in cmds.items():
                shutil.rmtree(work / "out", ignore_errors=True)
                code, stdout, err = _run(argv, env)
                if code != 0:
                    raise RuntimeError(f"clean {name} failed: {err.strip()}")
                clean[name] = _extracted(work / "out") if name == "extract" else stdout
            for fault, kw in FAULTS.items():
                for name, argv in cmds.items():
                    row = Row(f"{name} / {fault}")
                    t0 = time.perf_counter()
                    for _ in range(n):
                        shutil.rmtree(work / "out", ignore_errors=True)
                        srv.flaky(**kw)
                        code, stdout, err = _run(argv, env)
                        row.injected += sum(srv.injected.values())
                        srv.steady()
                        row.runs += 1
                        got = _extracted(work / "out") if name == "extract" else stdout
                        if code is None:
                            row.hangs += 1
                        elif code != 0:
                            row.failed += 1
                            row.partial += int(name == "extract" and got is not None)
                        elif got != clean[name]:
                            row.wrong += 1
                            row.partial += int(name == "extract")
                    row.seconds = time.perf_counter() - t0
                    out.append(row)
            for name in ("extract", "knn"):
                row = Row(f"{name} / ctrl-c")
                t0 = time.perf_counter()
                for _ in range(n):
                    shutil.rmtree(work / "out", ignore_errors=True)
                    srv.flaky(fail_every=None, cuts=0, stalls=10_000, stall_s=30,
                              after=len(urls))
                    reached, code, took = _interrupt(cmds[name], env, srv)
                    row.injected += srv.injected["stall"]
                    srv.steady()
                    row.runs += 1
                    if not reached:
                        row.failed += 1
                        continue
                    row.hangs += int(took >= 1.0 or code != 130)
                    row.partial += int((work / "out").exists())
                row.seconds = time.perf_counter() - t0
                out.append(row)
    finally:
        if own:
            shutil.rmtree(work, ignore_errors=True)
    return [r.cells() for r in out]


def table(rows: list[tuple]) -> str:
    """The rows under ``HEADER``, aligned."""
    width = [max(len(str(r[i])) for r in [HEADER, *rows]) for i in range(len(HEADER))]
    lines = []
    for j, r in enumerate([HEADER, *rows]):
        lines.append("  ".join(str(c).ljust(width[i]) if i == 0 else str(c).rjust(width[i])
                               for i, c in enumerate(r)))
        if j == 0:
            lines.append("  ".join("-" * w for w in width))
    return "\n".join(lines)


def failed(rows: list[tuple]) -> bool:
    """A wrong answer, a partial output or a hang anywhere."""
    return any(r[3] or r[4] or r[5] for r in rows)


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("n", nargs="?", type=int, default=3, help="runs per command and fault")
    ap.add_argument("--rows", type=int, default=30_000)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    rows = run(args.n, args.rows)
    print(table(rows))
    print(f"{args.n} run(s) per command and fault, {time.perf_counter() - t0:.0f} s")
    return 1 if failed(rows) else 0


if __name__ == "__main__":
    sys.exit(main())
