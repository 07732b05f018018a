"""Headless Chromium for the page tests (tests/cdp.py drives it): the module-scoped ``chromium`` fixture (import
it into a test module: ``from browser_helpers import chromium``) and what several of those tests read back."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from cdp import Browser, CDPError, find_chromium


@pytest.fixture(scope="module")
def chromium():
    exe = find_chromium()
    if exe is None:
        pytest.skip("Chromium is not installed (apt-get install -y chromium; .ci/run installs it when it can)")
    try:
        b = Browser(exe)
        b.open_page()
    except (CDPError, OSError) as e:
        pytest.skip(f"Chromium ({exe}) could not be started headless: {e}")
    yield b
    b.close()


def _problems(events: list[dict], root: Path) -> tuple[list[str], list[str]]:
    errors, outside = [], []
    root_url = root.resolve().as_uri()
    for e in events:
        m, p = e.get("method"), e.get("params", {})
        if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            errors.append("console: " + " ".join(str(a.get("value", a.get("description", ""))) for a in p["args"]))
        elif m == "Runtime.exceptionThrown":
            errors.append("exception: " + str(p.get("exceptionDetails", {}).get("text")))
        elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            errors.append("log: " + p["entry"].get("text", ""))
        elif m == "Network.requestWillBeSent":
            url = p["request"]["url"]
            if not (url.startswith("data:") or url == "about:blank" or url.startswith(root_url + "/")):
                outside.append(url)
    return errors, outside


def _wait(b: Browser, expr: str, timeout: float = 10.0):
    t = time.monotonic()
    while time.monotonic() - t < timeout:
        v = b.evaluate(expr)
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {expr}")


def _canvas_origin(b: Browser) -> tuple[float, float]:
    b.evaluate("document.querySelector('.rg-stage canvas').scrollIntoView({block: 'center'})")
    r = b.evaluate("(() => { const r = document.querySelector('.rg-stage canvas').getBoundingClientRect();"
                   " return [r.left, r.top, r.width, r.height]; })()")
    return r
