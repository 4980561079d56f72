"""Score a run directory from its files: per variant, per call, per direction. Used right after a run
(``testbed run``) and on its own to re-score a stored run (``testbed score RUN_DIR``); no network needed.
"""

from __future__ import annotations

import json
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from testbed.errors import InputError
from testbed.media.clips import load_clip
from testbed.media.tap import load_records
from testbed.scoring.codecs import codec as codec_params
from testbed.scoring.direction import DirectionScore, SentPackets, TapArrivals, score_direction
from testbed.scoring.playout import ReceivedPackets

SCORES = "scores.json"


def _sent(path: str) -> SentPackets:
    data = np.load(path)
    return SentPackets(data["seq"], data["send_ns"], data["rtp_ts"])


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


def score_call(call: dict[str, Any], taps: dict[str, str], variant_dir: Path, with_pesq: bool = True) -> dict[str, Any]:
    """Both directions of one call; a side without records (a call that never connected) is said so."""
    directions = {}
    for sender_side, receiver_side in (("caller", "callee"), ("callee", "caller")):
        sender, receiver = call["sides"].get(sender_side, {}), call["sides"].get(receiver_side, {})
        label = f"{call[sender_side]}->{call[receiver_side]}"
        if "sent_file" not in sender or "received_file" not in receiver:
            directions[label] = {"note": sender.get("error") or receiver.get("error") or "no records"}
            continue
        sent = _sent(sender["sent_file"])
        ssrcs = np.load(sender["sent_file"])["ssrc"]
        ssrc = int(ssrcs[0]) if len(ssrcs) else 0  # what went on the wire, whatever aiortc's objects say
        params = codec_params(call["codec"])
        clip_rate = 16000 if params.wideband else 8000
        score: DirectionScore = score_direction(
            call["codec"],
            sent,
            _tap_arrivals(taps, call[receiver_side], ssrc),
            ReceivedPackets.from_npz(np.load(receiver["received_file"])),
            load_clip(sender["clip"], clip_rate),
            clip_rate,
            sender.get("clip_frames"),
            with_pesq=with_pesq,
        )
        if score.audio is not None and len(score.audio):
            write_wav(
                variant_dir / "audio" / f"{call['id']}-{call[sender_side]}-to-{call[receiver_side]}.wav",
                score.audio,
                score.audio_rate,
            )
        directions[label] = score.as_dict()
    return {
        "id": call["id"],
        "name": call["name"],
        "outcome": call["outcome"],
        "reason": call["reason"],
        "setup_s": call["setup_s"],
        "codec": call["codec"],
        "dscp": call["dscp"],
        "directions": directions,
    }


def score_variant(
    variant_dir: Path, with_pesq: bool = True, progress: Callable[[str], None] = lambda message: None
) -> dict[str, Any]:
    workload_file = variant_dir / "workload.json"
    if not workload_file.exists():
        raise InputError(f"{variant_dir}: no workload.json (not a variant directory of a `testbed run`)")
    workload = json.loads(workload_file.read_text())
    calls = []
    for call in workload["calls"]:
        progress(f"scoring {variant_dir.name}: {call['id']}")
        calls.append(score_call(call, workload["taps"], variant_dir, with_pesq))
    scores = {"variant": variant_dir.name, "calls": calls}
    (variant_dir / SCORES).write_text(json.dumps(scores, indent=1))
    return scores


def variant_dirs(run_dir: Path) -> list[Path]:
    """The variants of a run directory, in the order they ran."""
    run_file = run_dir / "run.json"
    if not run_file.exists():
        raise InputError(f"{run_dir}: no run.json; give a directory written by `testbed run`")
    names = json.loads(run_file.read_text())["variants"]
    return [run_dir / name for name in names]
