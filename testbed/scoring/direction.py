"""Score one direction of one call: network statistics -> playout -> E-model and PESQ, plus MOS per
second for timeline plots. Pure: arrays in, a dataclass out (the files are read by ``testbed.rescore``).

Ta for the E-model = mean one-way network delay (application send to the receiver's kernel) + the
codec's packetization + the playout buffer's mean wait + the codec's algorithmic delay. Ppl is the
effective loss (lost on the network + arrived too late to be played), BurstR that of the effective loss
pattern. Echo: T = Ta, Tr = 2 Ta with TELR 65 dB (``emodel.call_inputs``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from testbed import rtp
from testbed.codecs import FRAME_S, emodel_params
from testbed.codecs import codec as call_codec
from testbed.scoring import emodel
from testbed.scoring.browser import BrowserListener, browser_figures, talk_span
from testbed.scoring.netstats import NetStats, in_flight, network_stats
from testbed.scoring.options import DEFAULT_SCORING, ScoringOptions
from testbed.scoring.pesq import PesqResult, pesq_score
from testbed.scoring.playout import DEFAULT_BUFFER, JitterBuffer, PlayoutResult, ReceivedPackets, playout
from testbed.scoring.visqol import visqol_score

WINDOW_S = 3.0  # the per-second MOS looks at this much audio around each second


@dataclass(frozen=True)
class SentPackets:
    """What the sender's application sent (one entry per RTP packet)."""

    seq: np.ndarray
    send_ns: np.ndarray
    rtp_ts: np.ndarray


@dataclass(frozen=True)
class TapArrivals:
    """The receiver's tap: the direction's incoming packets in arrival order."""

    seq: np.ndarray
    time_ns: np.ndarray


@dataclass
class DirectionScore:
    codec: str
    wideband: bool
    network: dict[str, Any]
    playout: dict[str, Any]
    ta_ms: float | None
    ppl_percent: float | None
    burst_ratio: float | None
    r: float | None
    mos_emodel: float | None
    mos_pesq: float | None
    pesq_mode: str | None
    pesq_note: str = ""
    per_second: dict[str, list[Any]] = field(default_factory=dict)
    note: str = ""
    delay_source: str = "application send time"  # where the send times come from
    dscp: dict[str, Any] = field(default_factory=dict)  # what the sender marked, seen on its interface
    listener: str = "model"  # whose playout the headline MOS is of: the model's, or a browser's own
    model: dict[str, Any] = field(default_factory=dict)  # the model's figures when a browser is the listener
    browser: dict[str, Any] = field(default_factory=dict)  # the browser's own figures (BrowserFigures)
    fec: dict[str, Any] = field(default_factory=dict)  # Opus in-band FEC: sent, decoded, recovered
    mos_visqol: float | None = None  # ViSQOL speech MOS-LQO of the same audio (scoring.visqol)
    audio: np.ndarray | None = field(default=None, repr=False)
    audio_rate: int = 0

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("audio")
        return data


def missing_ends(sent_ts: np.ndarray, received_ts: np.ndarray, frame_ticks: int) -> tuple[int, int]:
    """Frames sent before the first received one and after the last: what the listener never got at
    the ends of the call (a path that died mid-call, a NAT that lost its mapping)."""
    if len(sent_ts) == 0 or len(received_ts) == 0:
        return 0, 0
    sent = rtp.extended_timestamp(sent_ts)
    heard = rtp.extended_timestamp(received_ts, reference=int(sent[0]))
    lead = int(round((int(heard.min()) - int(sent.min())) / frame_ticks))
    tail = int(round((int(sent.max()) - int(heard.max())) / frame_ticks))
    return max(lead, 0), max(tail, 0)


def join_network(sent: SentPackets, tap: TapArrivals) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per sent packet: (extended seq, send time, first arrival time or -1); and arrival order (with copies)."""
    joined = rtp.join(sent.seq, tap.seq, tap.time_ns, earliest=True)
    return joined.sent_seq, np.asarray(sent.send_ns, dtype=np.int64), joined.recv_ns, joined.arrival_seq


def score_direction(
    codec: str,
    sent: SentPackets,
    tap: TapArrivals,
    received: ReceivedPackets,
    clip: np.ndarray,
    clip_rate: int,
    clip_frames: int | None,
    buffer: JitterBuffer = DEFAULT_BUFFER,
    options: ScoringOptions = DEFAULT_SCORING,
    browser: BrowserListener | None = None,
    hang_up_ns: int | None = None,
) -> DirectionScore:
    """``received`` without payloads (a browser listener's packets seen by its tap, with no way to know
    what they carried) still gives the model's schedule, not its audio. With ``browser`` the headline
    is what the browser played and reported; the model's figures stand beside it. ``hang_up_ns``: when
    the listener hung up; packets still in flight then are left out (``netstats.in_flight``).
    ``options.fec``: the playout model decodes Opus in-band FEC (as receivers do; the caller turns it off
    when the sender sent none)."""
    params = emodel_params(codec)
    if len(sent.seq) == 0:
        return DirectionScore(
            codec,
            params.wideband,
            {},
            {},
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            note="nothing was sent (the call never connected)",
        )
    seq, send_ns, recv_ns, arrival_seq = join_network(sent, tap)
    unknown = in_flight(send_ns, recv_ns, hang_up_ns) if hang_up_ns is not None else np.zeros(0, bool)
    if unknown.any():  # score only packets whose fate is known
        known = ~unknown
        sent = SentPackets(np.asarray(sent.seq)[known], np.asarray(sent.send_ns)[known], np.asarray(sent.rtp_ts)[known])
        seq, send_ns, recv_ns, arrival_seq = join_network(sent, tap)
    stats = network_stats(
        seq, send_ns, recv_ns, arrival_seq=arrival_seq, rtp_ts=sent.rtp_ts, clock_rate=call_codec(codec).clock_rate
    )
    stats = replace(stats, in_flight=int(unknown.sum()))
    if len(received.seq) == 0:
        return DirectionScore(
            codec,
            params.wideband,
            stats.as_dict(),
            {},
            None,
            100.0,
            None,
            None,
            emodel.mos_from_r(0.0, params.wideband),
            None,
            None,
            pesq_note="no speech arrived",
            note="no packet reached the listener",
        )
    decodable = len(received.payloads) == len(received.seq)
    ends = missing_ends(sent.rtp_ts, received.rtp_ts, call_codec(codec).frame_ticks)
    fec = options.fec
    # decoded only for what needs the audio (PESQ, ViSQOL, the WAVs beside them): the schedule, its
    # concealment and FEC recoveries, and so the E-model, come from the packets alone
    decode = decodable and (options.pesq or options.visqol)
    heard = playout(received, codec, buffer, decode=decode, missing_ends=ends, fec=fec)
    network_ms = stats.delay.mean_ms if np.isfinite(stats.delay.mean_ms) else 0.0
    buffer_ms = heard.mean_buffer_delay_ms if np.isfinite(heard.mean_buffer_delay_ms) else 0.0
    ta = emodel.absolute_delay_ms(network_ms, params, buffer_ms)
    ppl = 100.0 * heard.effective_loss
    burst = heard.burst_ratio if heard.burst_ratio and heard.burst_ratio > 0 else 1.0
    result = emodel.rating(emodel.call_inputs(ta, ppl, burst, params))
    pesq: PesqResult | None = None
    visqol: float | None = None
    if options.pesq and decodable:
        pesq = pesq_score(heard.audio, heard.rate, clip, clip_rate, loop_frames=clip_frames)
    if options.visqol and decodable:
        visqol = visqol_score(heard.audio, heard.rate, clip, clip_rate, loop_frames=clip_frames)
    score = DirectionScore(
        codec=codec,
        wideband=params.wideband,
        network=stats.as_dict(),
        playout=heard.as_dict(),
        ta_ms=round(ta, 2),
        ppl_percent=round(ppl, 3),
        burst_ratio=round(burst, 3),
        r=round(result.r, 2),
        mos_emodel=round(result.mos, 3),
        mos_pesq=None if pesq is None or pesq.mos is None else round(pesq.mos, 3),
        pesq_mode=None if pesq is None else pesq.mode,
        per_second=mos_per_second(stats, heard, params.name, buffer_ms, send_ns, recv_ns),
        pesq_note=(pesq.reason or "")
        if pesq is not None
        else ("" if decodable else "the model has no payloads to decode (a browser sent them)"),
        audio=heard.audio,
        audio_rate=heard.rate,
        fec={"decoded": fec and call_codec(codec).decoder == "opus", "recovered": heard.fec_recovered},
        mos_visqol=None if visqol is None else round(visqol, 3),
    )
    if browser is not None:
        browser_headline(score, browser, received, network_ms, burst, clip, clip_rate, clip_frames, options.pesq)
    return score


def browser_headline(
    score: DirectionScore,
    listener: BrowserListener,
    received: ReceivedPackets,
    network_ms: float,
    burst: float,
    clip: np.ndarray,
    clip_rate: int,
    clip_frames: int | None,
    with_pesq: bool,
) -> None:
    """Make the browser's own playout the headline: PESQ of what it played; the E-model with Chrome's
    mean jitter-buffer delay in Ta and its concealed fraction as Ppl (the model's burst ratio). The
    model's figures move to ``score.model``."""
    params = emodel_params(score.codec)
    figures = browser_figures(listener)
    played = talk_span(listener, received.arrival_ns)
    figures.played_s = round(played.size / listener.rate, 3)
    if with_pesq:
        result = pesq_score(played, listener.rate, clip, clip_rate, loop_frames=clip_frames)
        figures.mos_pesq = None if result.mos is None else round(result.mos, 3)
        figures.pesq_note = result.reason or ""
        score.pesq_mode = result.mode
    score.model = {
        "mos_emodel": score.mos_emodel,
        "mos_pesq": score.mos_pesq,
        "ta_ms": score.ta_ms,
        "ppl_percent": score.ppl_percent,
        "concealed_fraction": score.playout.get("effective_loss"),
        "mean_buffer_delay_ms": score.playout.get("mean_buffer_delay_ms"),
        "pesq_note": score.pesq_note,
    }
    buffer_ms = figures.mean_jitter_buffer_ms or 0.0
    concealed = figures.concealed_fraction or 0.0
    ta = emodel.absolute_delay_ms(network_ms, params, buffer_ms)
    result_r = emodel.rating(emodel.call_inputs(ta, 100 * concealed, burst, params))
    score.listener = "chromium"
    score.browser = figures.model_dump()
    score.ta_ms, score.ppl_percent = round(ta, 2), round(100 * concealed, 3)
    score.r, score.mos_emodel = round(result_r.r, 2), round(result_r.mos, 3)
    score.mos_pesq, score.pesq_note = figures.mos_pesq, figures.pesq_note
    score.audio, score.audio_rate = played, listener.rate


def mos_per_second(
    stats: NetStats, heard: PlayoutResult, codec: str, buffer_ms: float, send_ns: np.ndarray, recv_ns: np.ndarray
) -> dict[str, list[Any]]:
    """E-model MOS over a sliding window around each second (by send time from the first packet)."""
    params = emodel_params(codec)
    start = int(send_ns[0])
    seconds = int(np.ceil((send_ns[-1] - start) / 1e9)) or 1
    frame_time = np.arange(heard.frames) * FRAME_S  # frames from the first received packet: close enough
    missing = heard.frame_status != 0
    received = recv_ns >= 0
    sent_at = (send_ns - start) / 1e9
    delays = np.where(received, (recv_ns - send_ns) / 1e6, np.nan)
    out: dict[str, list[Any]] = {"second": [], "mos_emodel": [], "effective_loss": [], "mean_delay_ms": []}
    for second in range(seconds):
        low, high = second + 0.5 - WINDOW_S / 2, second + 0.5 + WINDOW_S / 2
        in_frames = (frame_time >= low) & (frame_time < high)
        in_packets = (sent_at >= low) & (sent_at < high) & received
        if not in_frames.any():
            continue
        loss = float(missing[in_frames].mean())
        delay = float(np.nanmean(delays[in_packets])) if in_packets.any() else float(np.nan_to_num(stats.delay.mean_ms))
        ta = emodel.absolute_delay_ms(delay, params, buffer_ms)
        r = emodel.rating(emodel.call_inputs(ta, 100 * loss, 1.0, params)).r
        out["second"].append(second)
        out["mos_emodel"].append(round(emodel.mos_from_r(r, params.wideband), 3))
        out["effective_loss"].append(round(loss, 4))
        out["mean_delay_ms"].append(round(delay, 2))
    return out
