"""Render a page in a real headless browser (Debian's chromium): a screenshot, and which of its images loaded."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
# Appended to a copy of the page: after load, write into the DOM how many images there are and which did not load.
_CHECK = """<script>window.addEventListener('load', function () {
  var images = Array.prototype.slice.call(document.images);
  var broken = images.filter(function (i) { return !(i.complete && i.naturalWidth > 0); })
                     .map(function (i) { return i.getAttribute('alt') || i.getAttribute('src').slice(0, 40); });
  var out = document.createElement('pre'); out.id = 'merkit-image-check';
  out.textContent = JSON.stringify({total: images.length, broken: broken});
  document.body.appendChild(out);
});</script>"""


def find_browser() -> str:
    """The path of a headless-capable chromium, or skip the test saying why (`.ci/run` installs one)."""
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no chromium found (apt-get install chromium; .ci/run installs it when it can)")


def _flags(browser: str) -> list[str]:
    # --no-sandbox: CI runs as root, where chromium refuses its sandbox
    return [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--mute-audio",
        "--no-first-run",
        "--disable-dev-shm-usage",
    ]


def image_check(page: Path, browser: str) -> dict:
    """``{"total": n, "broken": [alt, ...]}`` for the images of ``page`` as the browser loaded them."""
    checked = page.with_name(f".{page.stem}.checked.html")
    text = page.read_text()
    checked.write_text(text.replace("</body>", _CHECK + "</body>") if "</body>" in text else text + _CHECK)
    try:
        result = subprocess.run(
            [*_flags(browser), "--virtual-time-budget=15000", "--dump-dom", checked.as_uri()],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        checked.unlink()
    found = re.search(r'<pre id="merkit-image-check">(.*?)</pre>', result.stdout, re.S)
    assert found, f"the page script did not run; browser stderr: {result.stderr[-2000:]}"
    return json.loads(
        found.group(1).replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">")
    )


def screenshot(page: Path, out: Path, browser: str, size: tuple[int, int] = (1280, 2400)) -> np.ndarray:
    """A PNG screenshot of ``page`` as an (h, w, 3) uint8 array."""
    from PIL import Image

    result = subprocess.run(
        [*_flags(browser), f"--window-size={size[0]},{size[1]}", f"--screenshot={out}", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.is_file(), f"no screenshot written; browser stderr: {result.stderr[-2000:]}"
    return np.asarray(Image.open(out).convert("RGB"))


def assert_not_blank(pixels: np.ndarray) -> None:
    """Text and figures on the page: many distinct colours and real contrast, not one flat fill."""
    flat = pixels.reshape(-1, 3)
    assert flat.std() > 10, "the screenshot is (nearly) one colour"
    assert len(np.unique(flat[:: max(1, len(flat) // 200_000)], axis=0)) > 50, "the screenshot has almost no detail"
