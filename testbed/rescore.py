"""Score a run directory from its files: per variant, per call, per direction. Used right after a run
(``testbed run``) and on its own to re-score a stored run (``testbed score RUN_DIR``); no network needed.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from testbed import rtp
from testbed.codecs import FRAME_S, codec
from testbed.media.clips import load_clip
from testbed.media.tap.records import DIRECTION_IN, DIRECTION_OUT, TapRecords, load_records
from testbed.results import (
    CallRecord,
    CallScores,
    DirectionScores,
    LegSummary,
)
from testbed.results.scores import CallPath, UnscoredDirection
from testbed.scenario.speech import write_wav
from testbed.scoring.browser import BrowserListener, uniform_rate
from testbed.scoring.direction import DirectionScore, SentPackets, TapArrivals, score_direction
from testbed.scoring.options import DEFAULT_SCORING, ScoringOptions
from testbed.scoring.playout import ReceivedPackets

CLIP_SENDERS = ("aiortc", "rtp")  # endpoints that send the encoded clip in order from its offset
TAP_LISTENERS = ("rtp",)  # endpoints that record nothing they receive: their interface's tap does


def _sent(path: str) -> tuple[SentPackets, int]:
    """What the sender's application sent, and the SSRC that went on the wire (0 when nothing did)."""
    data = np.load(path)
    ssrc = int(data["ssrc"][0]) if len(data["ssrc"]) else 0  # whatever the endpoint's objects say
    return SentPackets(data["seq"], data["send_ns"], data["rtp_ts"]), ssrc


class TapFiles:
    """One variant's tap files (``'node/interface' -> prefix``), each read once and grouped once by
    (SSRC, direction), however many call directions look into it (a 1000-call run asks 4000 times)."""

    def __init__(self, taps: dict[str, str]):
        self.taps = taps
        self._loaded: dict[str, dict[tuple[int, int], TapRecords] | None] = {}

    def _streams(self, prefix: str) -> dict[tuple[int, int], TapRecords] | None:
        if prefix not in self._loaded:
            exists = Path(prefix + ".npz").exists()
            self._loaded[prefix] = _by_stream(load_records(prefix)) if exists else None
        return self._loaded[prefix]

    def stream(self, node: str, ssrc: int, direction: int) -> TapRecords | None:
        """``node``'s packets of ``ssrc`` in ``direction`` (in or out), from whichever of its taps saw them."""
        for key, prefix in self.taps.items():
            streams = self._streams(prefix) if key.split("/")[0] == node else None
            if streams is not None and (ssrc, direction) in streams:
                return streams[(ssrc, direction)]
        return None


def _by_stream(records: TapRecords) -> dict[tuple[int, int], TapRecords]:
    """A tap's packets split by (SSRC, direction), each in capture order: one stable sort."""
    if len(records) == 0:
        return {}
    key = records.ssrc.astype(np.int64) * 2 + records.direction
    order = np.argsort(key, kind="stable")
    ordered = records.select(order)
    starts = np.flatnonzero(np.diff(key[order], prepend=-1))
    ends = np.append(starts[1:], len(order))
    return {
        (int(ordered.ssrc[a]), int(ordered.direction[a])): ordered.select(np.arange(a, b))
        for a, b in zip(starts.tolist(), ends.tolist(), strict=True)
    }


def _arrivals(stream: TapRecords | None) -> TapArrivals:
    if stream is None:
        return TapArrivals(np.zeros(0, np.int64), np.zeros(0, np.int64))
    return TapArrivals(stream.seq, stream.time_ns)


def _sent_from_taps(
    departures: TapRecords | None, arrivals: TapRecords | None, clock_rate: int
) -> tuple[SentPackets, str]:
    """Send times where the sender has none of its own (a browser): its interface tap's departures;
    where the media is not visible there (inside a TCP/TLS tunnel), its RTP timestamps anchored at the
    fastest of the first packets seen at the receiver."""
    if departures is not None:
        return SentPackets(departures.seq, departures.time_ns, departures.rtp_ts), "sender's interface tap"
    if arrivals is None:
        empty = np.zeros(0, np.int64)
        return SentPackets(empty, empty, empty), "none"
    ts = rtp.extended_timestamp(arrivals.rtp_ts)
    media_ns = (ts - ts.min()) * 1_000_000_000 // clock_rate
    first = slice(0, 50)
    anchor = int(np.min(arrivals.time_ns[first] - media_ns[first]))
    order = np.argsort(rtp.extended_sequence(arrivals.seq), kind="stable")
    return (
        SentPackets(arrivals.seq[order], (anchor + media_ns)[order], arrivals.rtp_ts[order]),
        "RTP timestamps anchored at the first packets",
    )


def _received_from_tap(
    arrivals: TapRecords, sender: LegSummary, sent: SentPackets, call_codec: str, with_payloads: bool = True
) -> ReceivedPackets:
    """A browser listener's packets as its interface saw them. Their payloads are known only where an
    aiortc sender sent a looped encoded clip: payload ``k`` of its sent record (``sent``) is clip
    frame ``k``."""
    payloads: tuple[bytes, ...] = ()
    if with_payloads and sender.endpoint in CLIP_SENDERS and sender.sent_file and sender.clip_frames:
        from testbed.media.encoded_clip import encoded_clip

        clip = encoded_clip(call_codec, sender.clip, tuple(sender.opus) if sender.opus else None)
        sent_seq = rtp.extended_sequence(sent.seq)
        index = {int(seq): k for k, seq in enumerate(sent_seq.tolist())}
        received = rtp.extended_sequence(arrivals.seq, reference=int(sent_seq[0]) if sent_seq.size else None)
        rows = [index.get(int(seq)) for seq in received.tolist()]
        if all(row is not None for row in rows):
            start = sender.clip_offset_frames
            payloads = tuple(clip[(start + row) % len(clip)] for row in rows if row is not None)
    return ReceivedPackets(arrivals.time_ns, arrivals.seq, arrivals.rtp_ts, payloads, arrivals.ssrc)


def _browser_listener(receiver: LegSummary) -> BrowserListener | None:
    if receiver.played_file is None or receiver.browser_stats_file is None:
        return None
    played = np.load(receiver.played_file)
    stats = json.loads(Path(receiver.browser_stats_file).read_text())
    at_stop = stats.get("at_stop") or {}
    rates = played["rates"] if "rates" in played else np.full(len(played["lengths"]), int(played["rate"]))
    audio, lengths, rate = uniform_rate(played["pcm"], played["lengths"], rates)
    return BrowserListener(
        audio=audio,
        rate=rate,
        lengths=lengths,
        read_ns=played["read_ns"],
        inbound=at_stop.get("inbound", {}),
        pair=receiver.candidate_pair,
        version=receiver.browser.get("version", ""),
    )


AUDIO_DIR = "audio"  # in a variant's directory: what each listener heard, and the references


def _reference(sender: LegSummary, rate: int) -> np.ndarray:
    """The clip as the sender looped it. A browser's microphone file has silence in front of the clip
    and after it, to ``clip_frames`` 20 ms frames in all (aiortc pads only its last frame, with the
    clip's own start, which ``pesq_score`` does)."""
    clip = load_clip(sender.clip, rate)
    if sender.clip_lead_s <= 0:
        return clip
    clip = np.concatenate([np.zeros(int(round(sender.clip_lead_s * rate)), np.int16), clip])
    total = sender.clip_frames * int(round(rate * FRAME_S))
    return np.concatenate([clip, np.zeros(max(0, total - clip.size), np.int16)])


def write_reference(variant_dir: Path, sender: LegSummary, samples: np.ndarray, rate: int) -> str:
    """The clip a direction's audio is compared with (``samples``, as ``_reference`` made it for scoring),
    as a WAV in the variant's audio directory (once per clip: named by its content), so the run directory
    holds both sides of every comparison and can be shared whole. Written under a temporary name and
    renamed: scoring workers may race."""
    digest = hashlib.sha1(samples.tobytes(), usedforsecurity=False).hexdigest()[:8]
    name = f"{AUDIO_DIR}/reference-{Path(sender.clip).name}-{rate // 1000}k-{digest}.wav"
    target = variant_dir / name
    if not target.exists():
        partial = target.with_name(f".{target.name}.{os.getpid()}")
        write_wav(partial, samples, rate)
        partial.replace(target)
    return name


def dscp_on_wire(departures: TapRecords | None) -> dict[str, Any]:
    """What the sender really marked its RTP with, seen on its own interface."""
    if departures is None or not len(departures):
        return {}
    values, counts = np.unique(departures.dscp, return_counts=True)
    total = int(counts.sum())
    return {
        "packets": total,
        "marked_ef": round(float(counts[values == 46].sum()) / total, 4),
        "values": {str(int(v)): round(int(c) / total, 4) for v, c in zip(values, counts, strict=True)},
    }


def score_call(
    call: CallRecord,
    taps: TapFiles,
    variant_dir: Path,
    options: ScoringOptions = DEFAULT_SCORING,
    sampled: bool = True,
) -> CallScores:
    """Both directions of one call; a side without records (a call that never connected) is said so.
    A call outside the PESQ sample (``sampled`` False) gets every figure but the decoded audio's: its
    payloads are left aside, so nothing is decoded."""
    if not sampled:
        options = replace(options, pesq=False, visqol=False)
    directions: dict[str, DirectionScores | UnscoredDirection] = {}
    for sender_side, receiver_side in (("caller", "callee"), ("callee", "caller")):
        sender, receiver = call.sides.get(sender_side), call.sides.get(receiver_side)
        sender_node = call.caller if sender_side == "caller" else call.callee
        receiver_node = call.callee if sender_side == "caller" else call.caller
        label = f"{sender_node}->{receiver_node}"
        if (
            sender is None
            or receiver is None
            or (sender.sent_file is None and not sender.sent_ssrc)
            or (
                receiver.received_file is None
                and receiver.played_file is None
                and receiver.endpoint not in TAP_LISTENERS
            )
        ):
            why = (sender and sender.error) or (receiver and receiver.error) or "no records"
            directions[label] = UnscoredDirection(note=why)
            continue
        clip_rate = codec(call.codec).clip_rate
        ssrc = sender.sent_ssrc or 0
        if sender.sent_file is not None:
            sent, ssrc = _sent(sender.sent_file)
            source = "application send time"
        departures = taps.stream(sender_node, ssrc, DIRECTION_OUT)
        arrivals = taps.stream(receiver_node, ssrc, DIRECTION_IN)
        if sender.sent_file is None:
            sent, source = _sent_from_taps(departures, arrivals, codec(call.codec).clock_rate)
        if receiver.received_file is None and arrivals is None and receiver.played_file is not None:
            directions[label] = UnscoredDirection(
                note="a browser listener behind a TCP/TLS relay: its packets are visible nowhere on the wire "
                "and the browser records none, so nothing per packet can be scored; what it played is in calls/"
            )
            continue
        if receiver.received_file is not None:
            received = ReceivedPackets.from_npz(np.load(receiver.received_file))
            if not sampled:
                received = replace(received, payloads=())
        elif arrivals is not None:
            received = _received_from_tap(arrivals, sender, sent, call.codec, with_payloads=sampled)
        else:
            received = ReceivedPackets(*(np.zeros(0, np.int64),) * 3, ())
        network_arrivals = _arrivals(arrivals)
        if arrivals is None and len(received.seq):
            # the listener's interface saw no RTP: it came inside a TCP/TLS relay; its application's
            # arrival times are the network's, head-of-line stalls included
            network_arrivals = TapArrivals(received.seq, received.arrival_ns)
            source += "; arrivals at the listener's application (media inside TCP/TLS)"
        reference = _reference(sender, clip_rate)  # scored against, then written beside the audio
        score: DirectionScore = score_direction(
            call.codec,
            sent,
            network_arrivals,
            received,
            reference,
            clip_rate,
            sender.clip_frames or None,
            options=replace(options, fec=options.fec and fec_sent(sender) is True),
            browser=_browser_listener(receiver),
            hang_up_ns=int(receiver.hung_up_at * 1e9) if receiver.hung_up_at else None,
        )
        if score.fec:
            score.fec["sent"] = fec_sent(sender)
        if not sampled and score.mos_emodel is not None:
            score.pesq_note = "not in the PESQ sample (ScoringOptions.pesq_calls): packet-based figures only"
        score.delay_source = source
        score.dscp = dscp_on_wire(departures)
        files: dict[str, str] = {}
        if score.audio is not None and len(score.audio):
            files["audio_file"] = f"{AUDIO_DIR}/{call.id}-{sender_node}-to-{receiver_node}.wav"
            write_wav(variant_dir / files["audio_file"], score.audio, score.audio_rate)
            files["reference_file"] = write_reference(variant_dir, sender, reference, clip_rate)
        directions[label] = DirectionScores.model_validate(score.as_dict() | files)
    summary = call.model_dump(include={"id", "name", "outcome", "reason", "setup_s", "drain_s", "codec", "dscp"})
    return CallScores(**summary, talk_s=talk_time(call), directions=directions, path=call_path(call))


def fec_sent(sender: LegSummary) -> bool | None:
    """Whether the sender's Opus carried in-band FEC: encoded with FEC on and provisioned for some loss
    (libopus adds none for 0%); None when unknown (a browser encodes by itself)."""
    if not sender.opus:
        return None
    _, fec, expected_loss = sender.opus
    return bool(fec) and expected_loss > 0


def talk_time(call: CallRecord) -> float | None:
    """Seconds from connected to the first side stopping its media: what the call carried."""
    stops = [side.media_stopped_at for side in call.sides.values() if side.media_stopped_at]
    if call.connected_at is None or not stops:
        return None
    return round(max(0.0, min(stops) - call.connected_at), 3)


def call_path(call: CallRecord) -> CallPath | None:
    """The caller's ICE path, for calls that were given ICE servers or relayed."""
    caller, callee = call.sides.get("caller"), call.sides.get("callee")
    pair = caller.candidate_pair if caller else {}
    if not call.ice and pair.get("local_type") != "relay":
        return None
    relayed = pair.get("local_type") == "relay"
    policy = call.ice.get("policy", "all")
    return CallPath(
        caller_pair=pair,
        callee_pair=callee.candidate_pair if callee else {},
        relay_protocol=pair.get("relay_protocol") if relayed else None,
        turn_required=(relayed if policy == "all" else None) if pair else None,
        timings=caller.timings if caller else {},
        relay_tcp=caller.relay_tcp if caller and relayed else {},
    )
