"""Score a run directory from its files: per variant, per call, per direction. Used right after a run
(``testbed run``) and on its own to re-score a stored run (``testbed score RUN_DIR``); no network needed.
"""

from __future__ import annotations

import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np

from testbed.codecs import codec
from testbed.errors import InputError
from testbed.media.clips import load_clip
from testbed.media.tap.records import load_records
from testbed.results import (
    SCORES_FILE,
    WORKLOAD_FILE,
    CallRecord,
    CallScores,
    DirectionScores,
    VariantScores,
    WorkloadRecord,
)
from testbed.results.scores import UnscoredDirection
from testbed.scoring.direction import DirectionScore, SentPackets, TapArrivals, score_direction
from testbed.scoring.playout import ReceivedPackets


def _sent(path: str) -> tuple[SentPackets, int]:
    """What the sender's application sent, and the SSRC that went on the wire (0 when nothing did)."""
    data = np.load(path)
    ssrc = int(data["ssrc"][0]) if len(data["ssrc"]) else 0  # whatever the endpoint's objects say
    return SentPackets(data["seq"], data["send_ns"], data["rtp_ts"]), ssrc


def _tap_arrivals(taps: dict[str, str], node: str, ssrc: int) -> TapArrivals:
    """The receiver node's incoming packets of ``ssrc``, from whichever of its taps saw them."""
    for key, prefix in taps.items():
        if key.split("/")[0] != node or not Path(prefix + ".npz").exists():
            continue
        stream = load_records(prefix).stream(ssrc, 0)
        if len(stream.seq):
            return TapArrivals(stream.seq, stream.time_ns)
    return TapArrivals(np.zeros(0, np.int64), np.zeros(0, np.int64))


def write_wav(path: Path, audio: np.ndarray, rate: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(np.asarray(audio, dtype=np.int16).tobytes())


def score_call(call: CallRecord, taps: dict[str, str], variant_dir: Path, with_pesq: bool = True) -> CallScores:
    """Both directions of one call; a side without records (a call that never connected) is said so."""
    directions: dict[str, DirectionScores | UnscoredDirection] = {}
    for sender_side, receiver_side in (("caller", "callee"), ("callee", "caller")):
        sender, receiver = call.sides.get(sender_side), call.sides.get(receiver_side)
        sender_node = call.caller if sender_side == "caller" else call.callee
        receiver_node = call.callee if sender_side == "caller" else call.caller
        label = f"{sender_node}->{receiver_node}"
        if sender is None or receiver is None or sender.sent_file is None or receiver.received_file is None:
            why = (sender and sender.error) or (receiver and receiver.error) or "no records"
            directions[label] = UnscoredDirection(note=why)
            continue
        sent, ssrc = _sent(sender.sent_file)
        clip_rate = codec(call.codec).clip_rate
        score: DirectionScore = score_direction(
            call.codec,
            sent,
            _tap_arrivals(taps, receiver_node, ssrc),
            ReceivedPackets.from_npz(np.load(receiver.received_file)),
            load_clip(sender.clip, clip_rate),
            clip_rate,
            sender.clip_frames or None,
            with_pesq=with_pesq,
        )
        if score.audio is not None and len(score.audio):
            write_wav(
                variant_dir / "audio" / f"{call.id}-{sender_node}-to-{receiver_node}.wav",
                score.audio,
                score.audio_rate,
            )
        directions[label] = DirectionScores.model_validate(score.as_dict())
    summary = call.model_dump(include={"id", "name", "outcome", "reason", "setup_s", "codec", "dscp"})
    return CallScores(**summary, directions=directions)


def score_variant(
    variant_dir: Path,
    workload: WorkloadRecord | None = None,
    with_pesq: bool = True,
    progress: Callable[[str], None] = lambda message: None,
) -> VariantScores:
    """Score every call of one variant directory and write its scores.json (``workload``: its
    workload.json, when the caller has read it already)."""
    if workload is None:
        workload_file = variant_dir / WORKLOAD_FILE
        if not workload_file.exists():
            raise InputError(f"{variant_dir}: no workload.json (not a variant directory of a `testbed run`)")
        workload = WorkloadRecord.load(workload_file)
    calls = []
    for call in workload.calls:
        progress(f"scoring {variant_dir.name}: {call.id}")
        calls.append(score_call(call, workload.taps, variant_dir, with_pesq))
    scores = VariantScores(variant=variant_dir.name, calls=calls)
    scores.save(variant_dir / SCORES_FILE)
    return scores
