#!/usr/bin/env python
"""Re-run every ``$ mtquery ...`` command in the README's ```console blocks and paste its real
output under it, so the examples never drift from the code.

    .venv/bin/python docs/update_readme.py [README.md]
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"```console\n(.*?)```", re.S)


def run_block(body: str) -> str:
    out = []
    env = dict(os.environ, COLUMNS="110", MTQUERY_CACHE=os.environ.get("MTQUERY_CACHE", ""))
    env["PATH"] = f"{ROOT / '.venv' / 'bin'}:{env['PATH']}"
    for line in body.splitlines():
        if not line.startswith("$ "):
            continue
        cmd = line[2:]
        proc = subprocess.run(cmd, shell=True, cwd=ROOT, env=env, capture_output=True,
                              text=True)
        text = (proc.stdout + proc.stderr).rstrip()
        out.append(line)
        if text:
            out.append(text)
        if proc.returncode:
            out.append(f"(exit code {proc.returncode})")
        print(f"ran: {shlex.split(cmd)[:3]} -> {proc.returncode}", file=sys.stderr)
    return "\n".join(out) + "\n"


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "README.md"
    shutil.rmtree(ROOT / "out" / "readme", ignore_errors=True)  # examples start from scratch
    text = path.read_text()
    new = BLOCK.sub(lambda m: "```console\n" + run_block(m.group(1)) + "```", text)
    path.write_text(new)


if __name__ == "__main__":
    main()
