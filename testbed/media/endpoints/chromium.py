"""The Chromium call endpoint: the browser a cloud dialer's reps run, headless inside the node.

Each leg is its own browser (Debian's ``/usr/bin/chromium``, driven by Playwright; nothing downloads a
browser build) with a fresh profile, ``HOME`` and ``TMPDIR`` in a scratch directory of the agent
(``testbed.scratch``) that goes when the leg ends. The page (``chromium_page/``) is served on the node's
loopback, a secure context, and runs one ``RTCPeerConnection``; the harness relays offer and answer as
for aiortc.

- Microphone: the sender's reference clip with ``LEAD_S`` of silence in front, played by Chromium's
  fake capture device from ``getUserMedia`` on, repeated in the file for the whole call (the device's
  own loop is not seamless), so the PESQ reference is that padded clip looped (``clip_lead_s``,
  ``clip_frames`` in the leg's summary). The silence covers the
  second between ``getUserMedia`` and the first packet, so a call never starts in a cut word. Echo
  cancellation, noise suppression and gain control are off.
- DSCP: the audio sender's ``networkPriority`` (``unset`` asks for nothing); whatever the browser then
  puts on the wire is measured by the taps, never assumed.
- What the browser played out: the remote track, read sample-exact by ``MediaStreamTrackProcessor``
  (a muted ``<audio>`` makes Chromium pull it), saved as ``*-played.npz``; ``getStats()`` once a second
  as ``*-browser.json``.
- Nothing but the call leaves the browser: host-resolver rules send every name but loopback nowhere,
  background networking, component updates and mDNS host candidates are off (tests check the wire).
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from testbed import scratch
from testbed.codecs import codec as codec_registry
from testbed.media.endpoints.base import Description, EmitEvent, LegSpec, Preparation
from testbed.media.endpoints.chromium_browser import (
    CHROMIUM,
    LEAD_S,
    Browser,
    PageServer,
    chromium_version,
    microphone_file,
)
from testbed.media.endpoints.legs import LegBatches, Uncounted

HANG_UP_TIMEOUT_S = 30.0


def played_audio(result: dict[str, Any]) -> dict[str, np.ndarray]:
    """The page's capture -> int16 samples, and per chunk its length, sample rate and read time (epoch ns)."""
    return {
        "pcm": np.frombuffer(base64.b64decode(result.get("pcm") or ""), dtype="<i2").astype(np.int16),
        "lengths": np.asarray(result.get("lengths") or [], dtype=np.int64),
        "rates": np.asarray(result.get("rates") or [], dtype=np.int64),
        "read_ns": (np.asarray(result.get("readTimes") or [], dtype=np.float64) * 1e6).astype(np.int64),
    }


def candidate_pair(pair: dict[str, Any]) -> dict[str, str | None]:
    """The page's selected pair in the shape every endpoint reports (types, transport, relay protocol)."""
    if not pair:
        return {}
    local, remote = pair.get("local", {}), pair.get("remote", {})
    return {
        "local_type": local.get("type"),
        "remote_type": remote.get("type"),
        "protocol": local.get("protocol"),
        "relay_protocol": local.get("relayProtocol"),
    }


class ChromiumLeg(Uncounted):
    """One side of one call: one browser, one page, one peer connection."""

    def __init__(self, endpoint: ChromiumEndpoint, leg: LegSpec):
        self.endpoint = endpoint
        self.leg = leg
        self.browser: Browser | None = None
        self.created = time.time()
        self.connected_at: float | None = None
        self.stopped_at: float | None = None
        self.hung_up_at: float | None = None
        self.ended = False
        self.crashed = ""

    @property
    def page(self) -> Any:
        return None if self.browser is None else self.browser.page

    @property
    def config(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            "mime": codec_registry(self.leg.codec).mime,
            "networkPriority": self.leg.network_priority,
        }
        if self.leg.ice:  # RTCConfiguration's own names: the page passes them to RTCPeerConnection
            config["iceServers"] = self.leg.ice.get("servers", [])
            config["iceTransportPolicy"] = self.leg.ice.get("policy", "all")
        return config

    async def launch(self) -> None:
        self.browser = await self.endpoint.browser(self.leg.codec, self.leg.clip, self.leg.clip_offset)
        self.browser.leg = self

    def _page_event(self, message: dict[str, Any]) -> None:
        state, now = message.get("state"), time.time()
        if state == "connected" and self.connected_at is None:
            self.connected_at = now
            self._event("connected", setup_s=round(now - self.created, 4))
        elif state in ("failed", "closed") and not self.ended:
            self.ended = True
            if state == "failed":
                self._event("dropped" if self.connected_at else "failed")

    def _gone(self, why: str) -> None:
        if self.ended:
            return
        self.ended = True
        self.crashed = why
        self._event("dropped" if self.connected_at else "failed", reason=why)

    def _event(self, state: str, **values: Any) -> None:
        self.endpoint.emit({"event": "call", "call": self.leg.call, "state": state, "time": time.time(), **values})

    async def offer(self) -> Description:
        await self.launch()
        return {"sdp": await self.page.evaluate("(config) => offer(config)", self.config)}

    async def answer(self, remote: Description) -> Description:
        await self.launch()
        return {"sdp": await self.page.evaluate("([config, sdp]) => answer(config, sdp)", [self.config, remote["sdp"]])}

    async def accept(self, remote: Description) -> None:
        await self.page.evaluate("(sdp) => accept(sdp)", remote["sdp"])

    async def stop_media(self) -> float:
        if self.stopped_at is None:
            self.stopped_at = time.time()
            if not self.ended:
                self.stopped_at = await self.page.evaluate("() => stopMedia()")
        return self.stopped_at

    async def quiet_for(self) -> float | None:
        if self.ended or self.page is None:
            return None
        value = await self.page.evaluate("() => quietFor()")
        return None if value is None else float(value)

    async def hang_up(self) -> dict[str, Any]:
        """End the call, write what the browser played and its statistics, close the browser, and
        summarise this side."""
        result: dict[str, Any] = {}
        self.hung_up_at = time.time()
        error = self.crashed or None
        try:
            if self.page is not None and not self.crashed:
                result = await asyncio.wait_for(self.page.evaluate("() => hangUp()"), HANG_UP_TIMEOUT_S)
        except Exception as exc:
            error = error or f"hang-up in the page failed: {type(exc).__name__}: {exc}"
        finally:
            await self.close()
        stats = result.get("stats", [])
        frames = self.endpoint.microphone(self.leg.codec, self.leg.clip, offset=self.leg.clip_offset)[1]
        last = stats[-1] if stats else {}
        outbound, inbound = last.get("outbound", {}), last.get("inbound", {})
        summary: dict[str, Any] = {
            "call": self.leg.call,
            "endpoint": ChromiumEndpoint.kind,
            "codec": self.leg.codec,
            "dscp": self.leg.dscp,
            "network_priority": self.leg.network_priority,
            "clip": self.leg.clip,
            "sent_ssrc": outbound.get("ssrc"),
            "clip_lead_s": LEAD_S,
            "clip_frames": frames,  # one period
            "clip_offset_frames": int(self.leg.clip_offset * frames),
            "packets_received": int(inbound.get("packetsReceived", 0)),
            "packets_sent": int(outbound.get("packetsSent", 0)),
            "frames_sent": int(outbound.get("packetsSent", 0)),
            "connected_at": self.connected_at,
            "setup_s": None if self.connected_at is None else round(self.connected_at - self.created, 4),
            "launch_s": None if self.browser is None else self.browser.launch_s,
            "media_stopped_at": self.stopped_at,
            "hung_up_at": self.hung_up_at,
            "candidate_pair": candidate_pair(last.get("pair", {})),
            "timings": result.get("timings", {}),
            "browser": {"version": chromium_version(), "user_agent": result.get("userAgent", "")},
            "error": error,
        }
        if result.get("pcm") is not None:
            played = self.leg.record_path("played.npz")
            arrays = played_audio(result)
            np.savez(
                played, pcm=arrays["pcm"], lengths=arrays["lengths"], rates=arrays["rates"], read_ns=arrays["read_ns"]
            )
            summary["played_file"] = str(played)
        if stats:
            stats_file = self.leg.record_path("browser.json")
            stats_file.write_text(json.dumps({"samples": stats, "at_stop": result.get("atStop") or last}))
            summary["browser_stats_file"] = str(stats_file)
        return summary

    async def close(self) -> None:
        self.ended = True
        if self.browser is not None:
            await self.browser.close()


class ChromiumEndpoint(LegBatches[ChromiumLeg]):
    """Every browser leg of one node: one Playwright driver and one page server, a browser per leg."""

    kind: ClassVar[str] = "chromium"

    def __init__(self, emit: EmitEvent):
        super().__init__()
        self.emit = emit
        self.playwright: Any = None
        self.server: PageServer | None = None
        self.dir: Path | None = None
        self._mic_seconds: dict[tuple[str, str, float], float] = {}  # the longest call each file must cover
        self.warm: dict[Path, list[Browser]] = {}  # launched browsers waiting for a leg, per microphone

    async def ready(self) -> None:
        """The Playwright driver and the page server, once per agent."""
        if self.playwright is not None:
            return
        if not Path(CHROMIUM).exists():
            raise RuntimeError(f"no browser at {CHROMIUM}: install Debian's chromium (make setup does)")
        from playwright.async_api import async_playwright

        self.dir = self.dir or scratch.make("mic")
        self.server = self.server or PageServer()
        self.playwright = await async_playwright().start()
        chromium_version()

    def microphone(self, codec: str, clip: str, seconds: float = 0.0, offset: float = 0.0) -> tuple[Path, int]:
        """The fake microphone file for ``clip`` from ``offset`` covering at least ``seconds`` (and every
        length asked for before), and one loop period's frames."""
        key = (str(codec_registry(codec).clip_rate), clip, offset)  # one file per clip, rate and offset
        longest = self._mic_seconds[key] = max(seconds, self._mic_seconds.get(key, 0.0))
        assert self.dir is not None
        return microphone_file(self.dir, codec, clip, longest, offset)

    async def prepare(self, ahead: Preparation) -> None:
        """Launch a browser for each of the ``legs`` to come (the longest sending ``seconds``), before the
        workload's clock starts. A browser that cannot start fails its calls (with the reason), not the
        run, so other calls go on."""
        try:
            await self.ready()
        except Exception:
            return
        starts = ahead.offsets or [0.0] * ahead.legs
        mics = [self.microphone(ahead.codec, ahead.clip, ahead.seconds, offset)[0] for offset in starts]
        launched = await asyncio.gather(*(self._browser(mic).launch() for mic in mics), return_exceptions=True)
        for mic, browser in zip(mics, launched, strict=True):
            if isinstance(browser, Browser):
                self.warm.setdefault(mic, []).append(browser)

    def _browser(self, mic: Path) -> Browser:
        assert self.server is not None
        return Browser(self.playwright, self.server.url, mic)

    async def browser(self, codec: str, clip: str, offset: float = 0.0) -> Browser:
        """A launched browser whose microphone plays ``clip`` from ``offset``: a warm one, else one
        launched now."""
        await self.ready()
        mic, _ = self.microphone(codec, clip, offset=offset)
        if self.warm.get(mic):
            return self.warm[mic].pop()
        return await self._browser(mic).launch()

    def new_leg(self, leg: LegSpec) -> ChromiumLeg:
        return ChromiumLeg(self, leg)

    async def close(self) -> None:
        """The agent is ending: close every browser, the driver and the page server; remove the files."""
        waiting = [browser for browsers in self.warm.values() for browser in browsers]
        await asyncio.gather(
            *(leg.close() for leg in self.legs.values()), *(b.close() for b in waiting), return_exceptions=True
        )
        self.legs.clear()
        self.warm.clear()
        if self.playwright is not None:
            try:
                await asyncio.wait_for(self.playwright.stop(), 15)
            except Exception:
                pass
            self.playwright = None
        if self.server is not None:
            self.server.close()
            self.server = None
        if self.dir is not None:
            scratch.remove(self.dir)
            self.dir = None

    def stats(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "legs_open": len(self.legs),
            "legs_served": self.served,
            "browser": chromium_version() if self.playwright is not None else None,
        }
