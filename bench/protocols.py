"""Issue 18's two figures in one run: the MCP tool call overhead over the same run through the
REST API (bench/mcp_overhead.py) and the embeddable widget's first paint (bench/widget.py).

    .venv/bin/python bench/protocols.py [--runs 30] [--loads 30]

Each benchmark runs in its own process, one after the other (so they never compete for the
CPU), with its own table printed as it goes; the last line joins their last lines:
    mcp_overhead_median_ms=… widget_first_paint_ms=…
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _run(script: str, *args: str) -> str:
    """Run one benchmark, passing its output through as it comes, and return its last line."""
    command = [sys.executable, str(HERE / script), *args]
    last = ""
    with subprocess.Popen(command, cwd=HERE.parent, stdout=subprocess.PIPE, text=True) as child:
        assert child.stdout is not None
        for line in child.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            last = line.strip() or last
    if child.returncode != 0:
        raise SystemExit(f"{script} failed with exit status {child.returncode}")
    return last


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=30, help="MCP and REST runs each")
    parser.add_argument("--loads", type=int, default=30, help="page loads each")
    args = parser.parse_args()
    mcp = _run("mcp_overhead.py", "--runs", str(args.runs))
    widget = _run("widget.py", "--loads", str(args.loads))
    print(f"{mcp} {widget}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
