"""The documentation site builds strictly, offline, with the generated CLI and API references;
the README stays a short page whose quick start is what `make demo` runs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """``mkdocs build --strict`` into a temporary folder (never into the checkout)."""
    out = tmp_path_factory.mktemp("site")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet",
                           "--config-file", str(ROOT / "mkdocs.yml"), "--site-dir", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


def _html(site: Path) -> dict[str, str]:
    return {str(p.relative_to(site)): p.read_text() for p in site.rglob("*.html")}


def test_site_builds_strict_with_every_nav_page(site):
    import yaml

    config = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=yaml.BaseLoader)

    def pages(nav):
        for item in nav:
            for value in item.values():
                yield from (pages(value) if isinstance(value, list) else [value])

    nav = set(pages(config["nav"]))
    on_disk = {str(p.relative_to(ROOT / "docs")) for p in (ROOT / "docs").rglob("*.md")}
    assert on_disk - nav == set(), "docs pages missing from the nav of mkdocs.yml"
    assert nav - on_disk == {"cli.md"}  # the one generated page
    for page in nav:
        built = site / ("index.html" if page == "index.md" else page[:-3] + "/index.html")
        assert built.exists(), page


def test_cli_reference_is_generated_from_the_command_tree(site):
    import click
    import typer

    from mtquery.cli import app

    html = (site / "cli" / "index.html").read_text()
    root = typer.main.get_command(app)

    def walk(cmd, path):
        if getattr(cmd, "hidden", False):
            return
        yield path, cmd
        for name, sub in getattr(cmd, "commands", {}).items():
            yield from walk(sub, [*path, name])

    commands = list(walk(root, ["mtquery"]))[1:]
    assert len(commands) >= 15
    for path, cmd in commands:
        assert f'id="{"-".join(path)}"' in html, " ".join(path)
        for param in cmd.params:
            if isinstance(param, click.Option) and not param.hidden:
                assert f"<code>{param.opts[0]}</code>" in html, (path, param.opts[0])


def test_api_reference_comes_from_the_docstrings(site):
    import mtquery

    html = (site / "api" / "index.html").read_text()
    for name in ("knn", "search", "info", "connect", "latlon_to_cell"):
        doc = getattr(mtquery, name).__doc__.strip().splitlines()[0]
        assert f"mtquery.{name}" in html, name
        assert doc.split("``")[0][:30] in html.replace("&#39;", "'"), name


def test_site_needs_no_cdn(site):
    """Theme, fonts and scripts come with the site: nothing is fetched from elsewhere."""
    external = re.compile(
        r"""<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)=["']?(?:https?:)?//""")
    for name, text in _html(site).items():
        assert not external.search(text), name
        assert "fonts.googleapis" not in text and "fonts.gstatic" not in text, name
    for css in site.rglob("*.css"):
        assert not re.search(r"@import\s+url\(\s*['\"]?(?:https?:)?//", css.read_text()), css


def test_readme_is_short_and_links_resolve():
    text = README.read_text()
    assert len(text.encode()) <= 8000
    for target in re.findall(r"\]\(((?!https?://|#)[^)#]+)", text):
        assert (ROOT / target).exists(), target


def test_readme_quick_start_is_what_make_demo_runs():
    """The command the README says `make demo` runs is the Makefile's (stamps taken as done)."""
    proc = subprocess.run(["make", "-n", "--no-print-directory", "demo",
                           "-o", ".venv/.installed-core", "-o", ".venv/bin/python"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    (command,) = [ln for ln in proc.stdout.splitlines() if "mtquery" in ln]
    shown = re.search(r"`make demo` runs `(mtquery [^`]+)`", " ".join(README.read_text().split()))
    assert shown, "README: `make demo` runs `mtquery ...`"
    assert command.split("/")[-1] == shown.group(1)


def test_make_test_installs_the_docs_tools():
    """`make test` installs the extras of its FULL stamp; `dev` holds mkdocs and its plugins."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    dev = " ".join(extras["dev"])
    for tool in ("mkdocs", "mkdocs-material", "mkdocstrings[python]"):
        assert tool in dev, tool
    makefile = (ROOT / "Makefile").read_text()
    installs = re.search(r"^\$\(FULL\):.*\n\t.*pip install.*\[([^\]]+)\]", makefile, re.M)
    assert installs and "dev" in installs.group(1).split(",")
    assert re.search(r"^test: \$\(FULL\)$", makefile, re.M)
