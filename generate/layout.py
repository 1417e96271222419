"""The generator's output directory: shards other tools read as they are, and the run's own
files out of their way.

::

    DIR/part-IIII-KKKKK.parquet          shard K of input I (samples K*S .. K*S+S-1)
    DIR/_mtquery/run.json                the settings of the run (a rerun must use the same)
    DIR/_mtquery/state/part-IIII-KKKKK.json  written after the shard: sample range, rows, failures
    DIR/_mtquery/manifest.json           provenance + counts, rewritten at the end of every run

Only shards sit in DIR itself, so ``geopandas.read_parquet(DIR)`` and pyarrow datasets (which
skip names starting with ``_``) and DuckDB's ``read_parquet('DIR/*')`` (whose ``*`` matches
files, not directories) and ``'DIR/*.parquet'`` all read exactly the shards. Directories
written before this layout (``run.json``, ``manifest.json`` and ``_state/`` beside the shards)
are moved into it by the next run into them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from mtquery.errors import UsageError
from mtquery.io.fsio import atomic_write_text
from mtquery.io.manifests import GenerationManifest

META_DIR = "_mtquery"
STATE_DIR = "state"
RUN_FILE = "run.json"
MANIFEST_FILE = "manifest.json"


@dataclass(frozen=True)
class OutputDir:
    root: Path

    @property
    def meta(self) -> Path:
        return self.root / META_DIR

    @property
    def manifest(self) -> Path:
        return self.meta / MANIFEST_FILE

    def shard(self, name: str) -> Path:
        return self.root / f"{name}.parquet"

    def state_file(self, name: str) -> Path:
        return self.meta / STATE_DIR / f"{name}.json"

    def finished(self, name: str, start: int, stop: int) -> dict | None:
        """The state of shard ``name`` when it was finished for samples start..stop-1 (its
        file present unless it has no rows); a stale state is removed."""
        state_f = self.state_file(name)
        if not state_f.exists():
            return None
        st = json.loads(state_f.read_text())
        if ([st.get("start"), st.get("stop")] == [start, stop]
                and (st["rows"] == 0 or self.shard(name).exists())):
            return st
        state_f.unlink()
        return None

    def write_state(self, name: str, state: dict) -> None:
        atomic_write_text(self.state_file(name), json.dumps(state, indent=1))

    def write_manifest(self, manifest: GenerationManifest) -> None:
        manifest.write(self.manifest)


def open_output(output: str, settings: dict) -> OutputDir:
    """Create or reopen the output directory of a run with ``settings``: refuses one holding a
    run with other settings, adopts the old layout, drops temp files of a killed run."""
    out = OutputDir(Path(output))
    if out.root.exists() and not out.root.is_dir():
        raise UsageError(f"output {output} exists and is not a directory", argument="output")
    (out.meta / STATE_DIR).mkdir(parents=True, exist_ok=True)
    _adopt_old_layout(out)
    for d in (out.root, out.meta, out.meta / STATE_DIR, out.meta / "thumbnails"):
        for tmp in d.glob(".*.tmp"):  # leftovers of a killed run (never renamed into place)
            tmp.unlink(missing_ok=True)
    run_file = out.meta / RUN_FILE
    if run_file.exists():
        try:
            old = json.loads(run_file.read_text())
        except ValueError:
            old = None
        if old != settings:
            raise UsageError(f"{output} holds a run with other settings ({run_file}); use a "
                             "new output directory or remove it", argument="output")
    else:
        atomic_write_text(run_file, json.dumps(settings, indent=2, sort_keys=True))
    return out


def _adopt_old_layout(out: OutputDir) -> None:
    """Move ``run.json``, ``_state/*.json`` and ``manifest.json`` of an older version's output
    into ``_mtquery/``; run.json moves last, so an interrupted move is finished next time."""
    old_run, old_state = out.root / RUN_FILE, out.root / "_state"
    if not (old_run.is_file() and old_state.is_dir()) or (out.meta / RUN_FILE).exists():
        return
    for f in old_state.glob("*.json"):
        f.replace(out.meta / STATE_DIR / f.name)
    if not any(old_state.iterdir()):
        old_state.rmdir()
    (out.root / MANIFEST_FILE).unlink(missing_ok=True)  # rewritten at the end of the run
    old_run.replace(out.meta / RUN_FILE)
