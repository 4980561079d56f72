"""Scoring on every core: the calls of one or more variant directories scored by worker processes.

Scoring a call direction is mostly the playout model's decoding and PESQ, pure CPU in one thread, so a
run scored call by call uses one core of many. Here the calls are dealt to one worker per core (forked:
the scoring code is imported once, in the parent, and no lab or agent runs while scoring does: the
runner scores only after every lab is down, so the workers take no core from a call). Each worker
gets a variant's calls in a few chunks and reads that variant's taps once per chunk (``TapFiles``).
Worker processes score as this process does, call for call (a lab test compares them).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from testbed.errors import InputError
from testbed.rescore import TapFiles, score_call
from testbed.results import SCORES_FILE, WORKLOAD_FILE, CallRecord, CallScores, VariantScores, WorkloadRecord
from testbed.scoring.options import DEFAULT_SCORING, ScoringOptions

Progress = Callable[[str], None]


def _score_chunk(
    variant_dir: Path, taps: dict[str, str], calls: list[CallRecord], sampled: list[bool], options: ScoringOptions
) -> list[CallScores]:
    files = TapFiles(taps)
    return [score_call(call, files, variant_dir, options, sampled=s) for call, s in zip(calls, sampled, strict=True)]


def score_variant(
    variant_dir: Path,
    workload: WorkloadRecord | None = None,
    options: ScoringOptions = DEFAULT_SCORING,
    progress: Progress = lambda message: None,
) -> VariantScores:
    """Score every call of one variant directory in this process and write its scores.json (``workload``:
    its workload.json, when the caller has read it already)."""
    if workload is None:
        workload_file = variant_dir / WORKLOAD_FILE
        if not workload_file.exists():
            raise InputError(f"{variant_dir}: no workload.json (not a variant directory of a `testbed run`)")
        workload = WorkloadRecord.load(workload_file)
    return score_variants([(variant_dir, workload)], options, progress, workers=1)[0]


def workers_for(calls: int) -> int:
    """One worker per core, never more than there are calls; 1 means: score in this process."""
    return max(1, min(len(os.sched_getaffinity(0)), calls))


def score_variants(
    variants: list[tuple[Path, WorkloadRecord]],
    options: ScoringOptions = DEFAULT_SCORING,
    progress: Progress = lambda message: None,
    workers: int | None = None,
) -> list[VariantScores]:
    """Score every call of every variant directory (each with its workload.json's record) and write each
    directory's scores.json; ``workers`` processes (default: one per core)."""
    total = sum(len(workload.calls) for _, workload in variants)
    workers = workers or workers_for(total)
    chunks: list[tuple[int, list[CallRecord], list[bool]]] = []
    for index, (_, workload) in enumerate(variants):
        sample = options.pesq_sample([call.id for call in workload.calls])
        size = max(1, -(-len(workload.calls) // (2 * workers)))  # a few chunks per worker: balance
        for start in range(0, len(workload.calls), size):
            part = workload.calls[start : start + size]
            chunks.append((index, part, [call.id in sample for call in part]))
    scored: dict[int, dict[str, CallScores]] = {index: {} for index in range(len(variants))}
    if workers <= 1:
        for index, part, sampled in chunks:
            variant_dir, workload = variants[index]
            progress(f"scoring {variant_dir.name}: {', '.join(call.id for call in part)}")
            for call in _score_chunk(variant_dir, workload.taps, part, sampled, options):
                scored[index][call.id] = call
    else:
        progress(f"scoring {total} calls in {workers} processes")
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(workers, mp_context=context) as pool:
            futures = {
                pool.submit(_score_chunk, variants[index][0], variants[index][1].taps, part, sampled, options): index
                for index, part, sampled in chunks
            }
            done = 0
            for future in as_completed(futures):
                for call in future.result():
                    scored[futures[future]][call.id] = call
                    done += 1
                progress(f"scored {done} of {total} calls")
    results = []
    for index, (variant_dir, workload) in enumerate(variants):
        scores = VariantScores(variant=variant_dir.name, calls=[scored[index][call.id] for call in workload.calls])
        scores.save(variant_dir / SCORES_FILE)
        results.append(scores)
    return results
