"""A sweep's plan: the trials the ``sweep:`` section's cross product gives, each a validated scenario,
their shard assignment and their run order. Pure: a loaded scenario in, trials out; nothing runs here.

A trial is a point of the non-variant axes with one variant; its repetitions are runs. Shards take whole
trials (``shard_of``), because a run's one-way delays need one host clock and a trial's repetitions are
its statistics' replicates. A shard runs its runs in a seeded shuffled order by default,
so drift over time (a warming host, a neighbour's load) spreads over the trials instead of posing as
an effect of the one that ran last.
"""

from __future__ import annotations

import copy
import itertools
import random
import secrets
from dataclasses import dataclass, field
from typing import Any

from testbed.errors import InputError, ScenarioError
from testbed.results.sweep import VARIANT_AXIS, Axis
from testbed.scenario.fingerprint import digest, experiment_fingerprint, plan_fingerprint
from testbed.scenario.load import LoadedScenario, load_scenario_document
from testbed.scenario.yamlsource import YamlDocument


@dataclass(frozen=True)
class Trial:
    id: str
    index: int  # in listed order: what shards split by
    point: str  # the coordinates without the variant
    variant: str
    parameters: dict[str, Any]  # every axis' value, the variant's included


@dataclass
class SweepPlan:
    loaded: LoadedScenario
    axes: list[Axis]
    trials: list[Trial]
    repeat: int
    shuffled: bool
    seed: int | None
    fingerprint: str
    experiment_fingerprint: str
    scenarios: dict[str, LoadedScenario] = field(default_factory=dict, repr=False)  # by trial id


def _step(node: Any, part: str, path: str) -> Any:
    """One step of a parameter path: a mapping's key (made when absent) or a list's index."""
    if isinstance(node, list):
        if not part.isdigit() or int(part) >= len(node):
            raise ValueError(f"{path}: {part!r} is not an index of a list of {len(node)}")
        return node[int(part)]
    if isinstance(node, dict):
        if node.get(part) is None:
            node[part] = {}
        return node[part]
    raise ValueError(f"{path}: {part!r} is below a value, not a section")


def set_path(data: dict[str, Any], path: str, value: Any) -> None:
    """Set ``value`` at a dotted path of raw scenario data; missing mappings on the way are made (the
    scenario's validation then says whether the key means anything)."""
    *parents, last = path.split(".")
    node: Any = data
    for part in parents:
        node = _step(node, part, path)
    if isinstance(node, list):
        if not last.isdigit() or int(last) >= len(node):
            raise ValueError(f"{path}: {last!r} is not an index of a list of {len(node)}")
        node[int(last)] = copy.deepcopy(value)
    elif isinstance(node, dict):
        node[last] = copy.deepcopy(value)
    else:
        raise ValueError(f"{path}: {last!r} is below a value, not a section")


def _has_parent(data: Any, path: str) -> bool:
    node = data
    for part in path.split(".")[:-1]:
        if not isinstance(node, dict) or not isinstance(node.get(part), (dict, list)):
            return False
        node = node[part]
    return isinstance(node, dict)


def trial_document(loaded: LoadedScenario, variant: str, parameters: dict[str, Any]) -> YamlDocument:
    """The scenario with one trial's values set: the base's, and the variant's own setting of the same
    path too (a variant's router or links would otherwise win over the sweep). The trial keeps only its
    variant and the thresholds that can apply to it alone (gain rules compare variants: the sweep's
    paired comparisons do that across trials)."""
    data = copy.deepcopy(loaded.raw)
    data.pop("sweep", None)
    swept = {path: value for path, value in parameters.items() if path != VARIANT_AXIS}
    for path, value in swept.items():
        set_path(data, path, value)
    if data.get("variants"):
        own = copy.deepcopy(data["variants"][variant] or {})
        for path, value in swept.items():
            # the variant's own setting of the same field (its tunnels are topology.tunnels' overrides)
            theirs = path.removeprefix("topology.") if path.startswith("topology.tunnels.") else path
            if theirs.split(".")[0] in ("router", "links", "tunnels") and _has_parent(own, theirs):
                set_path(own, theirs, value)
        data["variants"] = {variant: own}
    data["thresholds"] = [
        rule
        for rule in data.get("thresholds") or []
        if isinstance(rule, dict) and rule.get("over") is None and rule.get("variant") in (None, variant)
    ]
    return YamlDocument(loaded.path, data, loaded.lines)


def _describe(parameters: dict[str, Any]) -> str:
    return ", ".join(f"{path}={value}" for path, value in parameters.items() if path != VARIANT_AXIS) or "variants"


def make_plan(
    loaded: LoadedScenario,
    *,
    variants: list[str] | None = None,
    repeat: int | None = None,
    seed: int | None = None,
    shuffled: bool | None = None,
) -> SweepPlan:
    """Every trial of the scenario's sweep, each validated as a scenario (one ScenarioError lists every
    problem, each with its trial's values); the command's options override the section's."""
    spec = loaded.scenario.sweep
    if spec is None:
        raise InputError(f"{loaded.path}: no sweep section (sweep: {{parameters: {{PATH: [VALUES]}}, repeat: N}})")
    names = loaded.variant_names
    listed = spec.parameters.get(VARIANT_AXIS)
    problems = [
        f"{loaded.path}: sweep.parameters.variant: {name!r} is not a variant (variants: {', '.join(names)})"
        for name in listed or []
        if name not in names
    ]
    if problems:
        raise ScenarioError(problems)
    chosen = [name for name in (listed or names) if variants is None or name in variants]
    if not chosen:
        raise InputError(f"{loaded.path}: no variant left to sweep (asked for {variants}, the sweep has {listed})")
    axes = [Axis(path=path, values=values) for path, values in spec.parameters.items() if path != VARIANT_AXIS]
    points = list(itertools.product(*(axis.values for axis in axes)))
    width = len(str(len(points)))
    trials: list[Trial] = []
    for number, values in enumerate(points, start=1):
        point = f"p{number:0{width}d}" if axes else "all"
        for variant in chosen:
            parameters = {axis.path: value for axis, value in zip(axes, values, strict=True)}
            parameters[VARIANT_AXIS] = variant
            trial_id = f"{point}-{variant}" if axes else variant
            trials.append(Trial(trial_id, len(trials), point, variant, parameters))
    plan = SweepPlan(
        loaded=loaded,
        axes=[*axes, Axis(path=VARIANT_AXIS, values=chosen)],
        trials=trials,
        repeat=repeat or spec.repeat,
        shuffled=spec.order == "shuffled" if shuffled is None else shuffled,
        seed=seed if seed is not None else spec.seed,
        fingerprint="",
        experiment_fingerprint=experiment_fingerprint(loaded),
    )
    found: dict[str, list[Trial]] = {}  # a problem once, with every trial that has it
    for trial in trials:
        try:
            plan.scenarios[trial.id] = load_scenario_document(trial_document(loaded, trial.variant, trial.parameters))
        except ValueError as exc:
            found.setdefault(f"{loaded.path}: sweep: {exc}", []).append(trial)
        except ScenarioError as exc:
            for problem in exc.problems:
                found.setdefault(problem, []).append(trial)
    for problem, which in found.items():
        ids = ", ".join(t.id for t in which[:4]) + (f" and {len(which) - 4} more" if len(which) > 4 else "")
        problems.append(f"{problem} (sweep trial {ids}: {_describe(which[0].parameters)})")
    if problems:
        raise ScenarioError(problems)
    templates = {  # a template only the sweep names (variants.x.router.template: [...]) counts too
        trial: {name: digest(t.model_dump(mode="json")) for name, t in scenario.variant_templates.items()}
        for trial, scenario in plan.scenarios.items()
    }
    plan.fingerprint = digest([plan_fingerprint(loaded), templates, chosen, plan.repeat])
    return plan


def shard_trials(plan: SweepPlan, index: int, total: int) -> list[Trial]:
    """Shard ``index`` of ``total`` (1-based): round robin over the points (the variants of a point stay
    together, so their paired comparison shares a host), or over the trials when there are fewer points
    than shards. Deterministic, so N machines given the same plan partition it exactly."""
    if not 1 <= index <= total:
        raise InputError(f"shard {index}/{total}: the index must be 1 to {total}")
    return [trial for trial in plan.trials if shard_of(plan, trial, total) == index]


def shard_of(plan: SweepPlan, trial: Trial, total: int) -> int:
    """The 1-based shard a trial belongs to among ``total``."""
    variants = len(plan.axes[-1].values)
    unit = trial.index // variants if len(plan.trials) // variants >= total else trial.index
    return unit % total + 1


def run_order(trials: list[Trial], repeat: int, seed: int | None) -> list[tuple[Trial, int]]:
    """The runs (trial, repetition) in the order they run: repetition by repetition, each block of every
    trial once, listed (``seed`` None) or shuffled by ``seed`` within the block. Shuffled, drift spreads
    over the trials; in blocks, repetition k of two variants runs close in time, so pairing them by
    repetition (the comparisons) pairs like with like (a randomised complete block design)."""
    shuffle = random.Random(seed).shuffle if seed is not None else None
    runs = []
    for repetition in range(1, repeat + 1):
        block = [(trial, repetition) for trial in trials]
        if shuffle is not None:
            shuffle(block)
        runs += block
    return runs


def new_seed() -> int:
    return secrets.randbelow(2**31)
