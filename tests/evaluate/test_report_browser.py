"""Render the report in headless Chromium: it must paint (not a blank page) and show its headings.

Needs the Debian ``chromium`` package (``apt-get install -y chromium``); skipped without it.
"""

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from alignkit.evaluate.report import write_report

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
]

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is None, reason="needs /usr/bin/chromium (apt-get install -y chromium)"
)


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / "profile"
    return subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=90,
    )


def test_report_renders_in_headless_chromium(tmp_path, report_data):
    page = write_report(tmp_path / "report.html", report_data)
    png = tmp_path / "shot.png"
    run = _chromium(tmp_path, f"--screenshot={png}", "--window-size=1280,2000", page.as_uri())
    assert png.exists(), f"no screenshot; chromium said:\n{run.stderr[-2000:]}"
    assert png.stat().st_size > 20_000  # a blank 1280x2000 PNG compresses to a few KB

    import matplotlib.image

    pixels = matplotlib.image.imread(png)
    assert pixels.shape[:2] == (2000, 1280)
    flat = pixels[..., :3].reshape(-1, 3)
    colours = np.unique((flat * 255).round().astype(np.uint8), axis=0)
    assert len(colours) > 50  # text, table borders and plot colours, not one flat colour
    # The top of the page (title underline, tables) is not all background.
    assert (pixels[:400, :, :3] < 0.5).any()

    dom = _chromium(tmp_path, "--dump-dom", page.as_uri()).stdout
    for heading in ["Findings", "Metrics", "Ratings", "Reward vs KL", "Annotator quality", "Sample responses"]:
        assert f"<h2>{heading}</h2>" in dom
    assert "beats sft on harmful compliance" in dom
    # The untrusted response is text in the DOM, not a live script element.
    assert "<script>alert" not in dom and "&lt;script&gt;alert" in dom
