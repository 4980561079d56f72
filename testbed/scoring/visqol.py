"""ViSQOL (speech mode, 16 kHz) beside PESQ: the metric WebRTC's test tools use, through
``visqol-python``, a pure-Python port of Google's ViSQOL that reproduces the C++ project's published
conformance figures (README, "A second perceptual metric").

The playout audio is aligned on the looped reference exactly as for PESQ (``pesq.align``), and the
same stretch of the reference is handed to ViSQOL, which does its own fine alignment. Speech mode uses
the polynomial (exponential) MOS mapping: the C++ default, a deep-lattice model, needs a TensorFlow
Lite runtime the testbed does not install. Narrow-band audio (G.711) is resampled to 16 kHz first.
"""

from __future__ import annotations

import functools
import logging
import warnings
from typing import Any

import numpy as np
import numpy.typing as npt

from testbed.scoring.pesq import SILENT_DBOV, _level_dbov, _loop_period, align, looped_reference, resample

RATE = 16000
MIN_S = 1.0


@functools.cache
def _api() -> Any:
    from visqol.api import VisqolApi

    logging.getLogger("visqol").setLevel(logging.ERROR)
    api = VisqolApi()
    api.create(mode="speech", use_lattice_model=False)
    return api


def visqol_score(
    degraded: npt.ArrayLike, degraded_rate: int, clip: npt.ArrayLike, clip_rate: int, loop_frames: int | None = None
) -> float | None:
    """ViSQOL speech MOS-LQO of ``degraded`` against the looped ``clip``; None without speech to score."""
    deg = resample(degraded, degraded_rate, RATE)
    ref_clip = resample(np.asarray(clip, dtype=np.int16), clip_rate, RATE)
    if deg.size < MIN_S * RATE or _level_dbov(deg) < SILENT_DBOV:
        return None
    frames = loop_frames
    period = _loop_period(ref_clip, RATE, frames)
    lag = align(deg, period)
    ref = looped_reference(ref_clip, RATE, deg.size, lag, frames)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its notes on rates and lengths; the result says what matters
        result = _api().measure_from_arrays(ref.astype(np.float64) / 32768, deg.astype(np.float64) / 32768, RATE)
    return float(result.moslqo)
