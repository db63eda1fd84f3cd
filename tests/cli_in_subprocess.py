"""``dsft ARGS`` in a fresh interpreter: its exit code, which heavy modules it imported, and what it printed to
stderr. Refusal tests use it to show a user error is said before torch or transformers is imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers")
SCRIPT = """
import json, sys
from dsft.cli.app import main
try:
    main(json.loads(sys.argv[1]))
    code = 0
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "heavy": [m for m in %r if m in sys.modules]}))
""" % (HEAVY,)


def run_dsft(args: list[str], cwd: Path) -> tuple[int, list[str], str]:
    """(exit code, heavy modules imported, stderr with its whitespace folded) of ``dsft ARGS`` run in ``cwd``."""
    result = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(args)], capture_output=True, text=True,
                            timeout=300, cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    return outcome["code"], outcome["heavy"], " ".join(result.stderr.split())
