"""One headless Chromium, launched and ready for a call: the flags that keep it to the call, its fake
microphone file, the page server on the node's loopback, and the browser's own processes and profile
(``Browser``). The call itself is ``testbed.media.endpoints.chromium``."""

from __future__ import annotations

import asyncio
import functools
import http.server
import math
import os
import subprocess
import threading
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np

from testbed import scratch
from testbed.codecs import FRAME_S
from testbed.codecs import codec as codec_registry
from testbed.media.clips import load_clip

CHROMIUM = os.environ.get("TESTBED_CHROMIUM", "/usr/bin/chromium")
PAGE_DIR = Path(__file__).with_name("chromium_page")
LEAD_S = 2.0  # silence before the clip in the fake microphone's file
# Chromium's fake capture device loops its file, but not seamlessly: each loop came out 9-27 ms longer
# than the file (measured with files at 16 and 48 kHz), which shifts the speech against the reference
# at every loop (PESQ of a 30 s call fell from 4.0 to 3.6). So the file holds the sender's loop repeated
# for the whole call and a margin, and the device never loops during a call.
MARGIN_S = 30.0
LAUNCH_TIMEOUT_S = 30.0

# Flags on top of Playwright's own (which already turn off background networking, component updates,
# sync, default apps, crash reporting and first-run UI).
BROWSER_FLAGS = (
    "--headless=new",
    "--no-sandbox",  # root inside a namespace or container: the setuid/user-namespace sandbox cannot start
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-domain-reliability",
    "--use-fake-ui-for-media-stream",  # grant the microphone without a prompt
    "--use-fake-device-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
    # Host candidates as plain addresses: mDNS .local names do not resolve across namespaces, and with
    # the feature on Chromium joins 224.0.0.251 (IGMP on the wire, seen by the capture test). Chromium may
    # keep only the last --disable-features, so this one can replace Playwright's; what that turns off
    # reaches out by name, which the host-resolver rules stop anyway.
    "--disable-features=WebRtcHideLocalIpsWithMdns,MediaRouter,OptimizationHints,Translate,DialMediaRouteProvider",
)


def lab_trust_flags() -> list[str]:
    """No DNS to the host's resolver: every name fails at once. The rules match address literals too, and
    a TURN server over TCP or TLS is connected by its address through the resolver: the lab's TLS
    servers (``TESTBED_LAB_HOSTS``) are excepted, and accepted by their key (``TESTBED_LAB_SPKI``),
    which the agent learnt from the lab; nothing else is trusted beyond Chromium's own store."""
    hosts = [h for h in os.environ.get("TESTBED_LAB_HOSTS", "").split(",") if h]
    flags = ["--host-resolver-rules=MAP * ~NOTFOUND, " + ", ".join(f"EXCLUDE {h}" for h in ["127.0.0.1", *hosts])]
    spki = os.environ.get("TESTBED_LAB_SPKI")
    return [*flags, f"--ignore-certificate-errors-spki-list={spki}"] if spki else flags


@functools.cache
def chromium_version() -> str:
    """``Chromium 156.0.8078.129 ...`` as the binary says it (recorded in every browser leg's summary)."""
    try:
        out = subprocess.run([CHROMIUM, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        return f"unknown ({exc})"
    return out.strip().splitlines()[-1] if out.strip() else "unknown"


def microphone_file(directory: Path, codec: str, clip: str, seconds: float, offset: float = 0.0) -> tuple[Path, int]:
    """Write the fake microphone's WAV: one period (``LEAD_S`` of silence, the clip, silence to whole
    20 ms frames) from ``offset`` (a fraction of the period, whole frames; the calls of a group do not
    talk in step) repeated to cover ``seconds`` and ``MARGIN_S`` more, at the codec's reference
    rate. Returns the file and one period's length in 20 ms frames (what PESQ's reference loops)."""
    rate = codec_registry(codec).clip_rate
    period = np.concatenate([np.zeros(int(LEAD_S * rate), np.int16), load_clip(clip, rate)])
    frame = int(rate * FRAME_S)
    period = np.concatenate([period, np.zeros(-len(period) % frame, np.int16)])  # whole 20 ms frames
    start = int(offset * (len(period) // frame)) * frame
    period = np.roll(period, -start)
    repeats = max(1, math.ceil((seconds + MARGIN_S) * rate / len(period)))
    path = directory / f"mic-{Path(clip).name}-{rate}-at{start}-x{repeats}.wav"
    if not path.exists():
        with wave.open(str(path), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(rate)
            out.writeframes(np.tile(period, repeats).astype("<i2").tobytes())
    return path, len(period) // frame


class PageServer:
    """The call page on the node's loopback (127.0.0.1 is a secure context), on a free port."""

    def __init__(self) -> None:
        handler = functools.partial(_QuietHandler, directory=str(PAGE_DIR))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, name="call page", daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/call.html"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # the agent's stdout is its protocol
        pass


class Browser:
    """One launched Chromium with the call page loaded, waiting for its call (``leg``). Launched before
    the workload's clock starts where the harness says how many legs come (``prepare``), as a rep's
    browser is open before the phone rings; its fake microphone starts only at ``getUserMedia``."""

    def __init__(self, playwright: Any, page_url: str, mic: Path):
        self.playwright = playwright
        self.page_url = page_url
        self.mic = mic
        self.dir = scratch.make("leg")
        self.context: Any = None
        self.page: Any = None
        self.launch_s: float | None = None
        self.leg: Any = None  # the ChromiumLeg it serves: gets the page's events

    async def launch(self) -> Browser:
        try:
            await self._launch()
        except BaseException:
            await self.close()  # nothing of a browser that did not start stays behind
            raise
        return self

    async def _launch(self) -> None:
        home, tmp = self.dir / "h", self.dir / "t"  # short: Chromium's singleton socket goes in TMPDIR
        home.mkdir()
        tmp.mkdir()
        env = {**os.environ, "HOME": str(home), "TMPDIR": str(tmp), "XDG_CONFIG_HOME": str(home / ".config")}
        env.pop("DISPLAY", None)
        started = time.monotonic()
        self.context = await self.playwright.chromium.launch_persistent_context(
            str(self.dir / "p"),
            executable_path=CHROMIUM,
            headless=False,  # --headless=new is in the flags: the mode is ours, not Playwright's default
            args=[*BROWSER_FLAGS, f"--use-file-for-fake-audio-capture={self.mic}", *lab_trust_flags()],
            ignore_default_args=["--mute-audio"],
            env=env,
            timeout=LAUNCH_TIMEOUT_S * 1000,
        )
        self.context.on("close", lambda _: self._gone("the browser closed"))
        self.page = self.context.pages[0] if self.context.pages else await self.context.new_page()
        self.page.on("crash", lambda _: self._gone("the page crashed"))
        await self.page.expose_function("testbedEvent", self._page_event)
        await self.page.goto(self.page_url)
        self.launch_s = round(time.monotonic() - started, 3)

    def _page_event(self, message: dict[str, Any]) -> None:
        if self.leg is not None:
            self.leg._page_event(message)

    def _gone(self, why: str) -> None:
        if self.leg is not None:
            self.leg._gone(why)

    async def close(self) -> None:
        """Close the browser (all its processes) and remove its profile, whatever state it is in."""
        context, self.context = self.context, None
        try:
            if context is not None:
                await asyncio.wait_for(context.close(), 15)
        except Exception:
            pass
        finally:
            scratch.remove(self.dir)
