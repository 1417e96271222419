"""Disk-corruption rows of the fault benchmark (benchmarks/faults.py --only disk).

For an index and for the exact-scan cache of a synthetic dataset, each trial copies the
pristine files, damages one stored file picked at random (seeded): a few bytes XORed at random
offsets, a run of random bytes (up to 64 KiB) written over it, or the file truncated; then runs
``python -m mtquery knn ... -o answer.csv`` in a subprocess and judges it:

- ``correct``: exit 0 and the same answer as the undamaged files gave (the damage was not on
  the path of this query, or the cache was discarded and rebuilt);
- ``detected``: exit 1 and one stderr line naming the damaged file;
- ``wrong answers``: exit 0 with another answer (must be 0);
- ``partial outputs``: a failed run left ``answer.csv`` behind (must be 0);
- ``hangs``: no exit within the timeout (must be 0);
- ``bad messages``: a failure that is not one line naming the file, or a traceback (must be 0).

Then ``mtquery index verify`` must name the damaged file (index trials): ``verify missed``.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

INDEX_FILES = ("manifest.json", "ivf.faiss", "store/meta.json", "store/vectors.f32",
               "store/rowhash.u64", "store/rows.arrow", "store/invalid.npy",
               "store/vectors.f32.xxh", "store/rows.arrow.xxh")
CACHE_FILES = ("meta.json", "vectors.f32", "rowhash.u64", "rows.arrow", "invalid.npy",
               "vectors.f32.xxh")
HEAD = ("damaged", "runs", "faults injected", "correct", "detected", "wrong answers",
        "partial outputs", "hangs", "bad messages", "verify missed")


@dataclass
class DiskStats:
    runs: int = 0
    faults: int = 0
    correct: int = 0
    detected: int = 0
    wrong: int = 0
    partial: int = 0
    hangs: int = 0
    bad_messages: int = 0
    verify_missed: int = 0
    notes: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        if len(self.notes) < 5:
            self.notes.append(text)

    def row(self, name: str) -> tuple:
        return (name, self.runs, self.faults, self.correct, self.detected, self.wrong,
                self.partial, self.hangs, self.bad_messages, self.verify_missed)

    @property
    def failed(self) -> bool:
        return bool(self.wrong or self.partial or self.hangs or self.bad_messages
                    or self.verify_missed)


def damage(path: Path, rng: random.Random) -> str:
    """Damage ``path`` one of three ways; returns what was done."""
    size = path.stat().st_size
    how = rng.choice(("bytes", "run", "truncate")) if size > 16 else "bytes"
    with open(path, "r+b") as fh:
        if how == "truncate":
            cut = rng.randrange(size)
            fh.truncate(cut)
            return f"truncated to {cut} of {size} bytes"
        if how == "run":
            length = min(size, rng.randint(1, 64 << 10))
            at = rng.randrange(size - length + 1)
            fh.seek(at)
            fh.write(rng.randbytes(length))
            return f"{length} random bytes at {at}"
        offsets = sorted(rng.randrange(size) for _ in range(rng.randint(1, 4)))
        for off in offsets:
            fh.seek(off)
            b = fh.read(1)[0]
            fh.seek(off)
            fh.write(bytes([b ^ rng.randrange(1, 256)]))
        return f"bytes XORed at {offsets}"


def _mtquery(argv: list[str], env: dict, root: Path, timeout: float):
    return subprocess.run([sys.executable, "-m", "mtquery", *argv], capture_output=True,
                          text=True, env=env, timeout=timeout, cwd=root)


def _judge(stats: DiskStats, proc, out: Path, want: str, name: str, what: str) -> None:
    if proc.returncode == 0:
        got = out.read_text() if out.is_file() else ""
        if got == want:
            stats.correct += 1
        else:
            stats.wrong += 1
            stats.note(f"{name} ({what}): exit 0 with another answer")
        return
    if out.exists():
        stats.partial += 1
        stats.note(f"{name} ({what}): a failed run left {out.name}")
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    if (proc.returncode == 1 and len(lines) == 1 and Path(name).name in lines[0]
            and "Traceback" not in proc.stderr):
        stats.detected += 1
    else:
        stats.bad_messages += 1
        stats.note(f"{name} ({what}): exit {proc.returncode}: {proc.stderr.strip()[-200:]}")


def run_disk(work: Path, env: dict, trials: int, rows: int, seed: int,
             timeout: float = 120.0) -> tuple[list[tuple], list[str], bool]:
    """The disk-corruption rows: (table rows, notes, failed)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    import synth

    root = work / "disk"
    data = root / "data.parquet"
    root.mkdir(parents=True, exist_ok=True)
    synth.write(synth.make_table(n=rows, dim=32, seed=17), data, row_group_size=5000)
    import pyarrow.parquet as pq

    uid = pq.read_table(data, columns=["unique_id"]).column(0)[123].as_py()
    pristine_index = root / "pristine.mtindex"
    cache_env = dict(env, MTQUERY_CACHE=str(root / "pristine-cache"))
    for argv in (["index", "build", str(data), "-o", str(pristine_index), "-q"],
                 ["knn", "--dataset", str(data), "--id", uid, "-k", "10", "--format", "csv"]):
        proc = _mtquery(argv, cache_env, root, timeout * 5)
        if proc.returncode != 0:
            raise RuntimeError(f"setup failed: {proc.stderr.strip()[-300:]}")
    pristine_cache = next((root / "pristine-cache" / "vectors").iterdir())
    rng = random.Random(seed)
    results, notes, failed = [], [], False
    for label in ("index", "cache"):
        stats = DiskStats()
        files = INDEX_FILES if label == "index" else CACHE_FILES
        trial_dir = root / "trial"
        out = root / "answer.csv"
        base = ["knn", "--dataset", str(data), "--id", uid, "-k", "10", "--format", "csv",
                "-o", str(out)]
        if label == "index":
            shutil.rmtree(trial_dir, ignore_errors=True)
            shutil.copytree(pristine_index, trial_dir)
            argv, tenv = [*base, "--index", str(trial_dir)], dict(env, MTQUERY_CACHE="off")
        else:
            cache_dir = trial_dir / "vectors" / pristine_cache.name
            shutil.rmtree(trial_dir, ignore_errors=True)
            shutil.copytree(pristine_cache, cache_dir)
            argv, tenv = base, dict(env, MTQUERY_CACHE=str(trial_dir))
        out.unlink(missing_ok=True)
        proc = _mtquery(argv, tenv, root, timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"{label}: clean run failed: {proc.stderr.strip()[-300:]}")
        want = out.read_text()
        for _ in range(trials):
            name = rng.choice(files)
            shutil.rmtree(trial_dir, ignore_errors=True)
            if label == "index":
                shutil.copytree(pristine_index, trial_dir)
                target = trial_dir / name
            else:
                shutil.copytree(pristine_cache, trial_dir / "vectors" / pristine_cache.name)
                target = trial_dir / "vectors" / pristine_cache.name / name
            what = damage(target, rng)
            stats.runs += 1
            stats.faults += 1
            out.unlink(missing_ok=True)
            try:
                proc = _mtquery(argv, tenv, root, timeout)
            except subprocess.TimeoutExpired:
                stats.hangs += 1
                stats.note(f"{name} ({what}): no exit within {timeout:.0f} s")
                continue
            _judge(stats, proc, out, want, name, what)
            if label == "index":
                ver = _mtquery(["index", "verify", "--index", str(trial_dir)], tenv, root,
                               timeout)
                if ver.returncode != 1 or Path(name).name not in ver.stderr:
                    stats.verify_missed += 1
                    stats.note(f"{name} ({what}): index verify exit {ver.returncode}: "
                               f"{ver.stderr.strip()[-200:]}")
        results.append(stats.row(f"disk: {label}"))
        notes += [f"disk: {label}: {n}" for n in stats.notes]
        failed |= stats.failed
    return results, notes, failed


def table(rows: list[tuple]) -> str:
    cells = [HEAD, *[tuple(str(c) for c in r) for r in rows]]
    width = [max(len(r[i]) for r in cells) for i in range(len(HEAD))]
    lines = []
    for j, r in enumerate(cells):
        lines.append("  ".join(c.ljust(width[i]) if i == 0 else c.rjust(width[i])
                               for i, c in enumerate(r)))
        if j == 0:
            lines.append("  ".join("-" * w for w in width))
    return "\n".join(lines)
