"""Widget first paint: how long the embeddable chat's bubble takes to appear on a customer's
page (docs/embed.md), in Debian's chromium through Playwright, on loopback.

    .venv/bin/python bench/widget.py [--loads 30]

Two stdlib servers on 127.0.0.1: "ours" serves static/js/embed-widget.js as it is in the
repository, "theirs" serves the host page under a strict CSP (tests/fakes/host_site.py) with
the one-line snippet, and the same page without it. For each load, a fresh browser context
(empty cache) navigates to the page: the widget's time is its `agentmarket-widget-painted`
performance mark (set in the frame after the bubble was added), the blank page's is its
`first-paint` entry; both are milliseconds from the navigation's start. The widget needs no
database or worker before it is clicked, so neither runs here.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, this file's folder comes first on sys.path, where bench/http.py would hide
# the standard library's `http` package: the project root replaces it.
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]

import argparse  # noqa: E402
import statistics  # noqa: E402
import threading  # noqa: E402
from functools import partial  # noqa: E402
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer  # noqa: E402

from playwright.sync_api import sync_playwright  # noqa: E402

from tests.fakes.host_site import HostSite  # noqa: E402
from tests.helpers.browser import CHROMIUM, CHROMIUM_ARGS  # noqa: E402

PAINTED = """() => new Promise(resolve => {
  const seen = () => performance.getEntriesByName('agentmarket-widget-painted');
  const check = () => seen().length ? resolve(seen()[0].startTime) : requestAnimationFrame(check);
  check();
})"""
FIRST_PAINT = """() => new Promise(resolve => {
  const seen = () => performance.getEntriesByName('first-paint');
  const check = () => seen().length ? resolve(seen()[0].startTime) : setTimeout(check, 5);
  check();
})"""


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        return


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loads", type=int, default=30)
    loads = parser.parse_args().loads

    ours = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(ROOT / "static")))
    threading.Thread(target=ours.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{ours.server_address[1]}"
    widget_ms: list[float] = []
    blank_ms: list[float] = []
    with HostSite(chat_server=base) as site, sync_playwright() as playwright:
        site.show(widget_src=f"{base}/js/embed-widget.js", chat_url=f"{base}/s/x/y/frame/")
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for index in range(loads + 1):  # the first pair warms the browser up, not counted
            for path, script, out in (("/blank", FIRST_PAINT, blank_ms), ("/", PAINTED, widget_ms)):
                context = browser.new_context(viewport={"width": 1280, "height": 900})
                page = context.new_page()
                page.goto(site.url + path)
                value = float(page.evaluate(script))
                if index:
                    out.append(value)
                context.close()
        browser.close()
    ours.shutdown()

    widget_median = statistics.median(widget_ms)
    blank_median = statistics.median(blank_ms)
    print(f"loads={loads} (fresh context each, chromium, loopback)")
    print(f"{'page':<22}{'median ms':>10}{'p95 ms':>10}")
    print(f"{'blank host page':<22}{blank_median:>10.1f}{_percentile(blank_ms, 0.95):>10.1f}")
    print(f"{'host page + widget':<22}{widget_median:>10.1f}{_percentile(widget_ms, 0.95):>10.1f}")
    print(f"ratio widget/blank median: {widget_median / blank_median:.2f}")
    print(f"widget_first_paint_ms={widget_median:.1f}")


if __name__ == "__main__":
    main()
