"""Fault benchmark: kill -9 the commands that publish outputs at random points, N times each.

For ``optimize``, ``index build``, ``generate --model spectral`` and ``extract`` (small
inputs built here: synthetic embeddings, and Core samples of the bundled Virginia scene),
each trial

1. starts ``python -m mtquery ...`` as a subprocess (its own process group) and kills it
   with SIGKILL after a random delay (seeded; drawn between the command's start-up time and
   its full run time, measured first), noting whether it had begun writing (staging or
   output present at that moment: "mid-write");
2. checks that no partial output was published: the output does not exist, or it is
   complete and valid (optimize: manifest, rows, ``validate``; index: ``load_index``
   against the dataset, rows; generate: every visible shard reads and validates), and that
   the dataset still reads its own rows (staging is never data);
3. runs the command again to completion: it must succeed with a complete output;
4. checks that no staging survives that run (``.mtquery-staging``, ``.*.tmp-*``,
   ``.*.tmp``, ``.*.old-*``, ``.build-*``).

Prints one row per command: runs, killed while running, of which mid-write, of which with
the output already complete (killed after publishing), finished before the kill, partial
outputs seen, leftover staging, rerun failures. When a killed optimize had already
published, its rerun refusing to overwrite (exit 2) counts as success.

Disk corruption (``--only disk``, benchmarks/faults_disk.py): N stored files of an index and
of the exact-scan cache damaged at random; runs, faults injected, wrong answers, partial
outputs and hangs (all three must be 0).

Network faults (``--only network``, benchmarks/faults_network.py): info, a region knn and
extract of a remote dataset behind a local server answering 500 / 429, cutting and stalling
bodies, and Ctrl-C during a stall; runs, faults injected, wrong answers, partial outputs and
hangs (all three must be 0).

    python benchmarks/faults.py [N=10] [--seed 0] [--keep DIR] [--only optimize,index,disk]
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGING_PATTERNS = (".mtquery-staging", ".*.tmp-*", ".*.tmp", ".*.old-*", ".build-*")
#: validate failures the uninterrupted generate output has too (none: zero vectors of the
#: fragments outside the scene are a WARN, zero_vectors)
GENERATE_KNOWN: tuple[str, ...] = ()
START_FAILURE = ("ImportError", "ModuleNotFoundError", "cannot import name",
                 "No such command", "internal error")


def staging_paths(root: Path) -> list[Path]:
    """Every path under ``root`` whose name is a staging pattern."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            if any(fnmatch.fnmatch(name, pat) for pat in STAGING_PATTERNS):
                found.append(Path(dirpath) / name)
        dirnames[:] = [d for d in dirnames if d != ".mtquery-staging"]
    return found


@dataclass
class Case:
    """One command under test: how to prepare a trial, run it and judge its output."""

    name: str
    root: Path
    argv: list[str]
    output: Path
    reset: Callable[[], None]
    #: None when the output is absent or complete; else what is wrong. ``required``: absent
    #: is wrong too (after the rerun)
    check: Callable[[bool], str | None]
    #: the command refuses to write over a complete output (optimize): when the killed run
    #: had already published, the next run's refusal (exit 2) is the right answer
    refuses_existing: bool = False
    #: a line for the notes after the trials (e.g. how many reruns resumed)
    extra: Callable[[], str] | None = None


@dataclass
class Stats:
    runs: int = 0
    killed: int = 0
    mid_write: int = 0
    complete_at_kill: int = 0
    finished: int = 0
    partial: int = 0
    leftover: int = 0
    rerun_failures: int = 0
    notes: list[str] = field(default_factory=list)
    startup_s: float = 0.0
    full_s: float = 0.0

    def note(self, text: str) -> None:
        if len(self.notes) < 5:
            self.notes.append(text)


def _env(work: Path) -> dict[str, str]:
    env = dict(os.environ, MTQUERY_OFFLINE="1", MTQUERY_CACHE=str(work / "cache"),
               PYTHONUNBUFFERED="1")
    env.pop("MTQUERY_DEBUG", None)
    return env


def _run(argv: list[str], env: dict[str, str], timeout: float = 300
         ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mtquery", *argv], capture_output=True,
                          text=True, env=env, timeout=timeout, cwd=ROOT)


# ---------------------------------------------------------------- the commands


def _rows(path: Path) -> int:
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(f).metadata.num_rows for f in sorted(path.rglob("*.parquet"))
               if not any(p.startswith(".") for p in f.relative_to(path).parts))


def _dataset_rows(path: Path) -> int:
    from mtquery.api import info

    return int(info(str(path))["rows"])


def _write_synth(path: Path, rows: int, dim: int, seed: int) -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    import synth

    path.parent.mkdir(parents=True, exist_ok=True)
    synth.write(synth.make_table(n=rows, dim=dim, seed=seed), path, row_group_size=5000)


def optimize_case(work: Path, rows: int) -> Case:
    root = work / "optimize"
    data = root / "data"
    src = data / "raw.parquet"
    _write_synth(src, rows, 32, seed=11)
    out = root / "optimized"  # root is read as a dataset too: staging must never count

    def reset() -> None:
        shutil.rmtree(out, ignore_errors=True)

    def check(required: bool) -> str | None:
        from mtquery.io.validate import validate

        published = (out / "_optimize.json").is_file()
        seen = _dataset_rows(root)
        if seen != rows * (2 if published else 1):
            return f"{root} reads {seen} rows: staging or a partial output counted as data"
        if not out.exists():
            return "no output" if required else None
        if not (out / "_optimize.json").is_file():
            return "output without its manifest"
        if _rows(out) != rows:
            return f"output holds {_rows(out)} rows, not {rows}"
        report = validate([str(out)])
        return None if report.ok else f"output fails validation: {report.as_dict()}"

    return Case("optimize", root, ["optimize", str(src), "-o", str(out), "-q",
                                   "--row-group-size", "1000"], out, reset, check,
                refuses_existing=True)


def index_case(work: Path, rows: int) -> Case:
    """``index build`` in resumable chunks of 10k rows: a killed build must leave no index
    (or the complete one), and its rerun must give an uninterrupted build's answers (the
    first complete build is the reference); reruns that went on from a checkpoint are
    counted (``resumed``)."""
    root = work / "index"
    data = root / "data"
    _write_synth(data / "raw.parquet", rows, 32, seed=12)
    out = data / "_mtindex"  # the default place, beside the files
    reference: dict = {}

    def reset() -> None:
        shutil.rmtree(out, ignore_errors=True)

    def answers(idx) -> list:
        import numpy as np

        q = np.random.default_rng(5).normal(size=(20, 32)).astype(np.float32)
        return [idx.search(v, 10)[0].tolist() for v in q]

    def check(required: bool) -> str | None:
        import json

        from mtquery.errors import MTQueryError
        from mtquery.io.datasets import resolve
        from mtquery.vectors.index import load_index

        if _dataset_rows(data) != rows:
            return f"the dataset reads {_dataset_rows(data)} rows, not {rows}"
        if not out.exists():
            return "no output" if required else None
        try:
            idx = load_index(out, resolve(str(data)))
        except MTQueryError as exc:
            return f"index does not load: {exc}"
        if idx.rows != rows:
            return f"index holds {idx.rows} rows, not {rows}"
        got = answers(idx)
        reference.setdefault("answers", got)
        if required:
            manifest = json.loads((out / "manifest.json").read_text())
            reference["resumed"] = reference.get("resumed", 0) + bool(manifest.get("resumed"))
        if got != reference["answers"]:
            return "answers differ from an uninterrupted build's"
        return None

    case = Case("index build", root, ["index", "build", str(data), "-q", "--chunk-rows",
                                      "10000"], out, reset, check)
    case.extra = lambda: f"{reference.get('resumed', 0)} rerun(s) resumed from a checkpoint"
    return case


def generate_case(work: Path, cells: int) -> Case:
    root = work / "generate"
    core = root / "core"
    subprocess.run([sys.executable, str(ROOT / "tests" / "data" / "core_virginia" /
                                        "make_data.py"), str(core), "--cells", str(cells)],
                   check=True, capture_output=True)
    out = root / "out"
    expected = cells * 25  # 5 x 5 fragments a Core sample

    def reset() -> None:
        shutil.rmtree(out, ignore_errors=True)

    def check(required: bool) -> str | None:
        import pyarrow.parquet as pq

        from mtquery.io.validate import validate

        if not out.exists():
            return "no output" if required else None
        shards = [f for f in sorted(out.glob("*.parquet")) if not f.name.startswith(".")]
        for f in shards:
            try:
                pq.read_table(f)
            except Exception as exc:  # noqa: BLE001 - any failure is a partial shard
                return f"shard {f.name} is unreadable: {str(exc).splitlines()[0]}"
        if shards:
            failed = [c for c in validate([str(out)]).as_dict()["checks"]
                      if c["status"] == "FAIL" and c["check"] not in GENERATE_KNOWN]
            if failed:
                return f"shards fail validation: {failed[0]['check']}: {failed[0]['example']}"
        if required:
            if not (out / "_mtquery" / "manifest.json").is_file():
                return "no _mtquery/manifest.json"
            if _rows(out) != expected:
                return f"{_rows(out)} rows, not {expected}"
        return None

    return Case("generate", root, ["generate", "--model", "spectral", "--input", str(core),
                                   "--output", str(out), "--shard-size", "1", "-q"],
                out, reset, check)


# ---------------------------------------------------------------- trials


def measure(case: Case, env: dict[str, str], retries: int, wait_s: float) -> Stats:
    """Start-up time (the subcommand's --help) and one full run; retries while the command
    cannot start (the CLI may be mid-refactor)."""
    stats = Stats()
    for attempt in range(retries + 1):
        case.reset()
        t0 = time.perf_counter()
        help_run = _run([*case.argv[: 2 if case.argv[0] == "index" else 1], "--help"], env)
        stats.startup_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        full = _run(case.argv, env)
        stats.full_s = time.perf_counter() - t0
        if help_run.returncode == 0 and full.returncode == 0:
            problem = case.check(True)
            if problem:
                raise SystemExit(f"{case.name}: an uninterrupted run gives a bad output: "
                                 f"{problem}")
            return stats
        err = (full.stderr or help_run.stderr).strip().splitlines()
        line = err[-1] if err else f"exit code {full.returncode}"
        if attempt < retries and any(w in "\n".join(err) for w in START_FAILURE):
            print(f"{case.name}: does not start ({line}); retrying in {wait_s:.0f} s",
                  file=sys.stderr)
            time.sleep(wait_s)
            continue
        raise RuntimeError(f"does not start: {line}")
    raise RuntimeError("does not start")


def trial(case: Case, stats: Stats, rng: random.Random, env: dict[str, str]) -> None:
    case.reset()
    for p in staging_paths(case.root):  # a clean start: no earlier trial's leftovers
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
    delay = rng.uniform(stats.startup_s, stats.full_s)
    stats.runs += 1
    proc = subprocess.Popen([sys.executable, "-m", "mtquery", *case.argv], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        proc.wait(timeout=delay)
        stats.finished += 1
        if proc.returncode != 0:
            stats.note(f"unkilled run failed: {proc.stderr.read().decode()[-200:]}")
    except subprocess.TimeoutExpired:
        mid = bool(staging_paths(case.root)) or case.output.exists()
        os.killpg(proc.pid, signal.SIGKILL)  # the process group this trial started
        proc.wait()
        stats.killed += 1
        stats.mid_write += mid
    finally:
        proc.stderr.close()
    problem = case.check(False)
    if problem:
        stats.partial += 1
        stats.note(f"after kill at {delay:.2f} s: {problem}")
    complete = problem is None and case.check(True) is None
    if complete and proc.returncode == -signal.SIGKILL:
        stats.complete_at_kill += 1
    rerun = _run(case.argv, env)
    if rerun.returncode == 0:
        problem = case.check(True)
    elif (complete and case.refuses_existing and rerun.returncode == 2
          and "not empty" in rerun.stderr):
        problem = None  # it never overwrites: the published output stands
    else:
        problem = f"rerun exit {rerun.returncode}: {rerun.stderr.strip()[-300:]}"
    if problem:
        stats.rerun_failures += 1
        stats.note(f"rerun after kill at {delay:.2f} s: {problem}")
    left = staging_paths(case.root)
    if left:
        stats.leftover += 1
        stats.note(f"staging left after the rerun: {', '.join(str(p) for p in left[:3])}")


HEAD = ("command", "runs", "killed", "mid-write", "complete at kill", "finished first",
        "partial outputs", "leftover staging", "rerun failures", "run s")


def table(rows: list[tuple]) -> str:
    cells = [HEAD, *[tuple(str(c) for c in r) for r in rows]]
    full = [r for r in cells if len(r) == len(HEAD)]
    width = [max(len(r[i]) for r in full) for i in range(len(HEAD))]
    lines = []
    for j, r in enumerate(cells):
        if len(r) < len(HEAD):  # a note spanning the row
            lines.append(f"{r[0]:<{width[0]}}  {r[1]}")
        else:
            lines.append("  ".join(c.ljust(width[i]) if i == 0 else c.rjust(width[i])
                                   for i, c in enumerate(r)))
        if j == 0:
            lines.append("  ".join("-" * w for w in width))
    return "\n".join(lines)


def extract_case(work: Path, rows: int) -> Case:
    root = work / "extract"
    src = root / "source" / "raw.parquet"
    _write_synth(src, rows, 32, seed=13)
    out = root / "region"
    bbox = "-20,-60,180,60"  # about half of the synthetic regions

    def expected() -> int:
        import mtquery

        return mtquery.search(str(src), bbox=bbox, limit=None, geometry=False).num_rows

    want = expected()

    def reset() -> None:
        shutil.rmtree(out, ignore_errors=True)

    def check(required: bool) -> str | None:
        if not out.exists():
            return "no output" if required else None
        if not (out / "_extract.json").is_file():
            return "output without its manifest"
        got = _dataset_rows(out)
        return None if got == want else f"output holds {got} rows, not {want}"

    return Case("extract", root, ["extract", str(src), "--bbox", bbox, "-o", str(out), "-q"],
                out, reset, check, refuses_existing=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("n", nargs="?", type=int, default=10, help="trials per command")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rows", type=int, default=60_000, help="rows of the synthetic datasets")
    ap.add_argument("--cells", type=int, default=4, help="Core samples for generate")
    ap.add_argument("--only", default="optimize,index,generate,extract,disk,network")
    ap.add_argument("--keep", type=Path, help="work here and keep it (default: a temp dir)")
    ap.add_argument("--retries", type=int, default=3, help="when a command cannot start")
    ap.add_argument("--retry-wait", type=float, default=180.0)
    args = ap.parse_args(argv)

    work = args.keep or Path(tempfile.mkdtemp(prefix="mtquery-faults-"))
    work.mkdir(parents=True, exist_ok=True)
    env = _env(work)
    rng = random.Random(args.seed)
    makers = {"optimize": lambda: optimize_case(work, args.rows),
              "index": lambda: index_case(work, args.rows),
              "generate": lambda: generate_case(work, args.cells),
              "extract": lambda: extract_case(work, args.rows)}
    rows: list[tuple] = []
    notes: list[str] = []
    extra_tables: list[str] = []
    failed = False
    t_all = time.perf_counter()
    try:
        for key in [k.strip() for k in args.only.split(",") if k.strip()]:
            if key == "disk":  # disk-corruption rows: benchmarks/faults_disk.py
                from faults_disk import run_disk
                from faults_disk import table as disk_table

                disk_rows, disk_notes, disk_failed = run_disk(work, env, args.n, args.rows,
                                                              args.seed)
                extra_tables.append(disk_table(disk_rows))
                notes += disk_notes
                failed |= disk_failed
                continue
            if key == "network":  # network-fault rows: benchmarks/faults_network.py
                import faults_network

                net_rows = faults_network.run(args.n, work=work / "network")
                extra_tables.append(faults_network.table(net_rows))
                failed |= faults_network.failed(net_rows)
                continue
            case = makers[key]()
            try:
                stats = measure(case, env, args.retries, args.retry_wait)
            except RuntimeError as exc:
                rows.append((case.name, str(exc)))
                failed = True
                continue
            t0 = time.perf_counter()
            for _ in range(args.n):
                trial(case, stats, rng, env)
            rows.append((case.name, stats.runs, stats.killed, stats.mid_write,
                         stats.complete_at_kill, stats.finished, stats.partial, stats.leftover,
                         stats.rerun_failures,
                         f"{time.perf_counter() - t0:.0f}"))
            notes += [f"{case.name}: {n}" for n in stats.notes]
            if case.extra is not None:
                notes.append(f"{case.name}: {case.extra()}")
            notes.append(f"{case.name}: start-up {stats.startup_s:.2f} s, full run "
                         f"{stats.full_s:.2f} s (kills drawn between them)")
            failed |= bool(stats.partial or stats.leftover or stats.rerun_failures)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    if rows:
        print(table(rows))
    for t in extra_tables:
        print(f"\n{t}")
    for n in notes:
        print(f"  {n}")
    print(f"seed {args.seed}, {args.n} trial(s) a command, {time.perf_counter() - t_all:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
