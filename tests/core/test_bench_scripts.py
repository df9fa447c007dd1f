"""Every benchmark starts as bench/README.md says to run it (`.venv/bin/python bench/X.py`):
run as a file, its folder comes first on sys.path, where bench/http.py would hide the standard
library's `http` package (which Django imports once the options are read, so `--help` alone
does not show it), and a renamed helper breaks only the script that imports it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = sorted(
    p.name for p in (ROOT / "bench").glob("*.py") if p.name not in {"__init__.py", "settings.py"}
)


@pytest.mark.parametrize("script", SCRIPTS)
def test_each_benchmark_starts_and_explains_its_options(script: str) -> None:
    done = subprocess.run(
        [sys.executable, f"bench/{script}", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: "), done.stdout


# bench/http.py is the module that would shadow `http` (it moves itself out of the way first);
# bench/protocols.py only starts two other scripts, each in a process of its own.
NO_DJANGO = {"http.py", "protocols.py"}


@pytest.mark.parametrize("script", [s for s in SCRIPTS if s not in NO_DJANGO])
def test_each_benchmark_can_import_django_after_its_own_imports(script: str) -> None:
    """The script's module body runs (not its main) with its folder first on sys.path, as
    `python bench/X.py` has it; then Django's HTTP layer, which needs the real `http`, loads."""
    probe = (
        "import runpy, sys; sys.path.insert(0, 'bench'); "
        f"runpy.run_path('bench/{script}', run_name='bench_probe'); "
        "import http.client, django.http"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
