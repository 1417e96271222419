"""Issue 22 acceptance, bad inputs (tests/data/bad_inputs): every file that cannot be read as
an embedding table is refused in one line -- a DataError / UsageError from the library, one
line on stderr and a non-zero exit from the command line -- and nothing is written where an
output was asked for (no output, no staging left beside it)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from clirun import run
from foreign import BAD, module, write_shape

import mtquery
from mtquery.errors import DataError, UsageError
from mtquery.io.datasets import resolve

CASES = tuple(module(BAD).NAMES)
#: case -> words the message of ``info`` must hold
WORDS = {
    "two_vectors": ("features", "vector", "--columns"),
    "no_vector": ("no vector column",),
    "ragged": ("31", "32"),
    "empty": ("no rows",),
    "zero_bytes": ("not a Parquet file",),
    "not_geometry": ("geometry", "not a geometry"),
}


@pytest.fixture(scope="module")
def bad(tmp_path_factory) -> dict[str, Path]:
    root = write_shape(BAD, tmp_path_factory.mktemp("bad-inputs"))
    return {case: root / name for case, name in module(BAD).NAMES.items()}


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def nothing_written(where: Path) -> None:
    assert list(where.iterdir()) == [], sorted(p.name for p in where.iterdir())


def refused_writing_nothing(write, tmp_path: Path) -> None:
    """``write(out)`` raises one line, and the folder ``out`` is written in stays empty."""
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises((DataError, UsageError)) as exc:
        write(out)
    assert "\n" not in str(exc.value)
    nothing_written(out)


def test_every_case_has_its_words():
    assert set(WORDS) == set(CASES)


# --- the library ----------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES)
def test_info_refuses_in_one_line(bad, case):
    with pytest.raises((DataError, UsageError)) as exc:
        mtquery.info(bad[case])
    message = str(exc.value)
    assert "\n" not in message
    for word in WORDS[case]:
        assert word in message, message


@pytest.mark.parametrize("case", CASES)
def test_knn_refuses(bad, case):
    with pytest.raises((DataError, UsageError)) as exc:
        mtquery.knn(bad[case], vector=[1.0] * 32, k=3)
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("case", CASES)
def test_index_build_refuses(bad, case, tmp_path):
    from mtquery.vectors.build import build_index

    refused_writing_nothing(lambda out: build_index(bad[case], out / "idx"), tmp_path)


@pytest.mark.parametrize("case", CASES)
def test_extract_refuses_and_writes_nothing(bad, case, tmp_path):
    refused_writing_nothing(lambda out: mtquery.extract(bad[case], output=out / "extracted"),
                            tmp_path)


@pytest.mark.parametrize("case", CASES)
def test_convert_refuses_and_writes_nothing(bad, case, tmp_path):
    refused_writing_nothing(lambda out: mtquery.convert(bad[case], out / "converted"), tmp_path)


# --- the command line -----------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES)
def test_cli_info_one_line(bad, case, capsys):
    code, out, err = run(capsys, "info", "-d", bad[case])
    assert code != 0
    line = one_line(err)
    for word in WORDS[case]:
        assert word in line, line
    assert out == ""


@pytest.mark.parametrize("case", CASES)
def test_cli_knn_one_line_nothing_written(bad, case, tmp_path, capsys):
    code, out, err = run(capsys, "knn", "-d", bad[case], "--lat", "45.3", "--lon", "8.6",
                         "--format", "json", "-o", tmp_path / "answer.json")
    assert code != 0
    one_line(err)
    assert out == ""
    nothing_written(tmp_path)


@pytest.mark.parametrize("command", ["extract", "convert"])
@pytest.mark.parametrize("case", CASES)
def test_cli_writers_one_line_nothing_written(bad, case, command, tmp_path, capsys):
    code, out, err = run(capsys, command, bad[case], "-o", tmp_path / "out", "--quiet")
    assert code != 0
    one_line(err)
    nothing_written(tmp_path)


@pytest.mark.parametrize("case", CASES)
def test_cli_validate_one_line_or_invalid(bad, case, capsys):
    """validate reports a readable bad file as INVALID (exit 1), an unreadable one in one
    line; never a traceback, never exit 0."""
    code, out, err = run(capsys, "validate", bad[case])
    assert code != 0
    assert "Traceback" not in err
    if err.strip():
        one_line(err)
    else:
        assert "INVALID" in out


# --- two vector columns and --columns -------------------------------------------------------


def test_two_vectors_names_both_and_columns(bad, capsys):
    with pytest.raises(DataError) as exc:
        mtquery.search(bad["two_vectors"])
    for word in ("features", "vector", "--columns"):
        assert word in str(exc.value)
    code, _, err = run(capsys, "search", "-d", bad["two_vectors"])
    assert code != 0
    line = one_line(err)
    assert "features" in line and "vector" in line and "--columns" in line


@pytest.fixture()
def two_vectors(bad, tmp_path) -> Path:
    """A copy of two_vectors of this test's own (a --columns is remembered for its files)."""
    path = tmp_path / "data" / "two_vectors.parquet"
    path.parent.mkdir()
    shutil.copy(bad["two_vectors"], path)
    return path


def test_columns_chooses_between_two_vectors(two_vectors, capsys):
    ds = resolve(two_vectors, columns="vector=features")
    info = mtquery.info(ds)
    assert info["columns"]["vector"] == "features" and info["rows"] == 50
    code, out, err = run(capsys, "info", "-d", two_vectors, "--columns", "vector=vector",
                         "--format", "json")
    assert code == 0, err
    assert json.loads(out)["columns"]["vector"] == "vector"


@pytest.mark.parametrize("columns", ["vector=nope", "vector=features,id=nope",
                                     "vector=features,time=nope",
                                     "vector=features,geometry=nope"])
def test_columns_naming_a_missing_column(two_vectors, columns, tmp_path, capsys):
    with pytest.raises((DataError, UsageError)) as exc:
        mtquery.info(resolve(two_vectors, columns=columns))
    assert "nope" in str(exc.value) and "\n" not in str(exc.value)
    out = tmp_path / "out"
    out.mkdir()
    for args in (("info", "-d", two_vectors),
                 ("knn", "-d", two_vectors, "--lat", "45.3", "--lon", "8.6", "--format",
                  "json", "-o", out / "answer.json"),
                 ("extract", two_vectors, "-o", out / "extracted", "--quiet"),
                 ("convert", two_vectors, "-o", out / "converted", "--quiet")):
        code, stdout, err = run(capsys, *args, "--columns", columns)
        assert code != 0, args
        assert "nope" in one_line(err), args
        assert stdout == ""
        nothing_written(out)
    # nothing remembered: the file is still refused for its two vector columns
    with pytest.raises(DataError, match="--columns"):
        mtquery.info(two_vectors)


def test_columns_bad_spelling_is_a_usage_error(two_vectors, capsys):
    with pytest.raises(UsageError):
        resolve(two_vectors, columns="colour=red")
    code, _, err = run(capsys, "info", "-d", two_vectors, "--columns", "colour=red")
    assert code != 0
    assert "--columns" in one_line(err)
