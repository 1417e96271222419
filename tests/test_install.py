"""A plain (non-editable) install finds the .sql view files and the bundled demo."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: what the wheel is built from (pyproject.toml's package-dir folders and its readme)
SOURCES = ("pyproject.toml", "README.md", "mtquery", "generate", "eval", "sql")


def _source_copy(dest: Path) -> Path:
    """The package's sources copied out of the checkout: setuptools writes build/ and
    *.egg-info beside the sources it builds, and those belong in a temporary folder."""
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    dest.mkdir()
    for name in SOURCES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=skip)
        else:
            shutil.copy2(src, dest / name)
    return dest


@pytest.mark.slow
def test_wheel_install_finds_sql_files(tmp_path):
    wheels = tmp_path / "wheels"
    source = _source_copy(tmp_path / "src")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(wheels), str(source)], check=True, cwd=tmp_path)
    wheel = next(wheels.glob("mtquery-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "mtquery/sql/10_embeddings.sql" in names
    assert "mtquery/data/demo.parquet" in names
    assert "mtquery/data/_mtquery/thumbnails/demo.parquet" in names  # the demo's image chips
    assert "mtquery/web/static/view.js" in names and "mtquery/web/browser.py" not in names
    assert "mtquery/generate/__init__.py" in names and "mtquery/eval/__init__.py" in names
    assert not any(n.startswith(("generate/", "eval/", "sql/")) for n in names)

    fresh = tmp_path / "fresh"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(fresh)], check=True)
    py = fresh / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q",
                    "--no-deps", "--no-index", str(wheel)], check=True, cwd=tmp_path)
    # dependencies come from the test venv's site-packages (no .pth processing there, so the
    # editable mtquery of the test venv is not visible; the fresh install is)
    env = dict(os.environ, PYTHONPATH=sysconfig.get_paths()["purelib"])
    code = ("import mtquery, mtquery.query.session as v; "
            "assert 'fresh' in mtquery.__file__, mtquery.__file__; "
            "print(len(v.sql_files())); "
            "con = mtquery.connect('demo'); "
            "print(con.execute('SELECT count(*) FROM acquisitions').fetchone()[0])")
    out = subprocess.run([str(py), "-c", code], capture_output=True, text=True, env=env,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    n_sql, n_acq = out.stdout.split()
    assert int(n_sql) >= 4 and int(n_acq) > 0
