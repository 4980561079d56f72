"""A report seen through a real browser: Debian's Chromium, headless, opens ``report.html`` from disk (as a
person would after unzipping a run), and says what it found: console errors, the charts plotly drew, the
audio players and whether each one's file loads. It also saves the static images of the report (the whole
page, and one PNG per chart) for slides and READMEs: offline, no image-export service or extra renderer.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from testbed.errors import CapabilityError, InputError

CHROMIUM = os.environ.get("TESTBED_CHROMIUM", "/usr/bin/chromium")  # the chromium endpoint's browser too
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--mute-audio", "--allow-file-access-from-files"]
LOAD_TIMEOUT_MS = 60_000
AUDIO_TIMEOUT_MS = 20_000

DRAWN = "document.querySelectorAll('.plotly-graph-div:not(.js-plotly-plot)').length == 0"
# every player's metadata loaded (or failed): its duration in seconds, or null
_LOAD_AUDIO = """async () => Promise.all([...document.querySelectorAll('audio')].map(a => new Promise(done => {
  const finish = () => done({src: a.getAttribute('src'), duration: isFinite(a.duration) ? a.duration : null});
  a.addEventListener('loadedmetadata', finish, {once: true});
  a.addEventListener('error', finish, {once: true});
  a.preload = 'metadata'; a.load();
})))"""


@dataclass
class ReportView:
    """What the browser saw."""

    console_errors: list[str] = field(default_factory=list)
    charts: int = 0  # plotly charts drawn (each has its SVG)
    chart_titles: list[str] = field(default_factory=list)
    audio: dict[str, float | None] = field(default_factory=dict)  # player src -> duration (None: did not load)
    images: list[Path] = field(default_factory=list)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60] or "chart"


def view_report(report: Path, images_dir: Path | None = None, width: int = 1400) -> ReportView:
    """Open ``report`` in headless Chromium; with ``images_dir``, save ``report.png`` (the whole page) and
    one PNG per chart there."""
    if not report.is_file():
        raise InputError(f"{report}: no such report (a run directory holds report.html)")
    if not os.access(CHROMIUM, os.X_OK):
        raise CapabilityError(f"{CHROMIUM}: no browser to render the report with (apt install chromium)")
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    view = ReportView()
    with tempfile.TemporaryDirectory(prefix="vtb-report-") as home, sync_playwright() as playwright:
        env: dict[str, str | float | bool] = {
            **os.environ,
            "HOME": home,
            "TMPDIR": home,
            "XDG_CONFIG_HOME": f"{home}/.config",
        }
        env.pop("DISPLAY", None)
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=False, args=FLAGS, env=env)
        try:
            page = browser.new_page(viewport={"width": width, "height": 900})
            page.on("console", lambda m: view.console_errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda exc: view.console_errors.append(str(exc)))
            page.goto(report.resolve().as_uri(), wait_until="load", timeout=LOAD_TIMEOUT_MS)
            charts = page.locator(".js-plotly-plot")
            try:  # plotly marks each chart it has drawn; one it could not draw stays unmarked
                page.wait_for_function(DRAWN, timeout=LOAD_TIMEOUT_MS)
            except PlaywrightTimeout:
                pass
            view.charts = charts.count()
            view.chart_titles = [t.strip() for t in page.locator(".js-plotly-plot .gtitle").all_text_contents()]
            page.set_default_timeout(AUDIO_TIMEOUT_MS)
            view.audio = {entry["src"]: entry["duration"] for entry in page.evaluate(_LOAD_AUDIO)}
            if images_dir is not None:
                page.add_style_tag(content=".modebar { display: none !important; }")  # not in a still image
                images_dir.mkdir(parents=True, exist_ok=True)
                whole = images_dir / "report.png"
                page.screenshot(path=str(whole), full_page=True)
                view.images.append(whole)
                for index in range(view.charts):
                    title = view.chart_titles[index] if index < len(view.chart_titles) else "chart"
                    image = images_dir / f"{index + 1:02d}-{_slug(title)}.png"
                    charts.nth(index).screenshot(path=str(image))
                    view.images.append(image)
        finally:
            browser.close()
    return view
