"""Benchmark: long use. Many short runs, one after another, in ONE harness process (the public API,
``testbed.load(...).run(...)``), with what a run could leave behind counted before the first run, after
every run and after the last: network namespaces (named, and alive in any process), links, qdiscs,
iptables and nftables rules, conntrack entries (root namespace), processes (the testbed's anywhere, and
the harness's descendants: the fork server must stop after each run), the harness's open file
descriptors and threads, mounts, Docker containers/images/networks/volumes, files outside the run
directories (/tmp, /dev/shm, browser scratch directories) and the registry's records. None may grow
(after the last run, given --settle seconds; "max" is the most seen right after any run) and the
harness's memory in use may not trend up (its slope over the last 50 runs, or the last half of fewer,
less twice its standard error, above 0). Memory in use is what a leak grows: the bench runs with
PYTHONMALLOC=malloc (it restarts itself so), so Python's objects and the C libraries' buffers are all in
glibc's count (mallinfo2); RSS is printed beside it, since it also moves with how the allocators' arenas
fragment (--pymalloc keeps Python's allocator and judges RSS instead). Each run's directory is a fresh
temporary one, deleted after the run; the registry and the scratch root are private (TESTBED_REGISTRY,
TESTBED_SCRATCH), and each item that grew is listed, so leftovers of other runs on the host can be told
apart (host-wide counts are best taken on a quiet host). Exit status 1 when a count grew, memory trends
up or a run failed.
Usage (the issue's two soaks):
  sudo .venv/bin/python bench/soak.py [--runs 100] [--scenario FILE] [--settle 10] [--json FILE]
  sudo .venv/bin/python bench/soak.py --backend docker --runs 20
"""

from __future__ import annotations

import argparse
import collections
import ctypes
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from scipy import stats

if TYPE_CHECKING:
    from testbed.api import Experiment

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SCENARIO = "name: soak\ncalls:\n  - {name: c, from: client, to: gateway, talk: 2s}\n"
INFO = {"processes (host, all)"}  # host-wide, moved by anyone: shown, never a failure
WINDOW = 50

State = dict[str, list[str] | int]


@dataclass
class Soak:
    before: State
    after: State = field(default_factory=dict)  # after the last run, once settled
    peaks: dict[str, int] = field(default_factory=dict)  # the most seen right after any run
    series: dict[str, list[float]] = field(
        default_factory=lambda: {
            name: [] for name in ("rss_kb", "anon_kb", "file_kb", "heap_kb", "py_blocks", "fds", "wall_s")
        }
    )
    failures: list[str] = field(default_factory=list)
    settled_s: float = 0.0


def private_roots() -> Path:
    """A temporary directory holding the registry, the scratch root and the run directories; set before
    testbed is imported (its roots read these variables)."""
    work = Path(tempfile.mkdtemp(prefix="soak-"))
    os.environ["TESTBED_REGISTRY"] = str(work / "registry")
    os.environ["TESTBED_SCRATCH"] = str(work / "scratch")
    return work


def lines(command: list[str]) -> list[str]:
    """The command's non-empty output lines; none when the tool is missing or fails."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in done.stdout.splitlines() if line.strip()] if done.returncode == 0 else []


def entries(directory: str | Path) -> list[str]:
    try:
        return sorted(os.listdir(directory))
    except OSError:
        return []


def read(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


def link(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""


def process_counts(marker: str) -> State:
    """Every process as "PID COMM: COMMAND LINE", and those that look like the testbed's, carry
    ``marker`` in their environment or descend from the harness; and the network namespaces they are in
    (a leaked agent keeps a deleted namespace alive)."""
    table: dict[int, tuple[int, str, bool]] = {}  # pid -> (parent, shown as, marked)
    namespaces = set()
    for pid in (int(name) for name in entries("/proc") if name.isdigit()):
        stat = read(f"/proc/{pid}/stat")
        if not stat:
            continue
        state, parent = stat[stat.rindex(")") + 2 :].split()[:2]
        args = read(f"/proc/{pid}/cmdline").replace("\0", " ").strip()[:120] or f"[zombie of {parent}]" * (state == "Z")
        environment = read(f"/proc/{pid}/environ").split("\0")
        table[pid] = (
            int(parent),
            f"{pid} {stat[stat.index('(') + 1 : stat.rindex(')')]}: {args}",
            marker in environment,
        )
        namespaces.add(link(f"/proc/{pid}/ns/net"))
    me = os.getpid()
    mine: set[int] = set()
    frontier = {me}
    while frontier:  # the harness's descendants, generation by generation
        frontier = {pid for pid, (parent, _, _) in table.items() if parent in frontier} - mine
        mine |= frontier
    alike = re.compile(r"^\d+ vtb-|-m testbed\.|bin/testbed |turnserver|chromium|iperf3")  # not `mypy testbed/`
    return {
        "netns alive (/proc/*/ns/net)": sorted(namespaces - {""}),
        "processes (host, all)": sorted(show for _, show, _ in table.values()),
        "processes (testbed-like)": sorted(show for p, (_, show, _) in table.items() if p != me and alike.search(show)),
        "processes (with this soak's env)": sorted(show for p, (_, show, ours) in table.items() if p != me and ours),
        "processes (harness descendants)": sorted(table[pid][1] for pid in mine),
    }


def harness_fds() -> list[str]:
    """What this process's descriptors point at, by kind: ``socket``, ``pipe``, ``anon_inode:[pidfd]``, a path."""
    targets = (link(f"/proc/self/fd/{fd}") for fd in entries("/proc/self/fd"))
    return sorted(re.sub(r"^(socket|pipe|net):\[\d+\]$", r"\1", target) for target in targets if target)


class MallInfo2(ctypes.Structure):
    _fields_ = [  # glibc's struct mallinfo2, all size_t
        (name, ctypes.c_size_t)
        for name in [
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        ]
    ]


def heap_in_use_kb() -> int:
    """What malloc has handed out and not had back (glibc's mallinfo2): unlike RSS, not moved by freed
    memory the allocator keeps for later, so a real leak in C code (codecs, PESQ) shows here."""
    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = MallInfo2
    info = libc.mallinfo2()
    return int(info.uordblks + info.hblkhd) // 1024


def status(field: str) -> int:
    match = re.search(rf"^{field}:\s+(\d+)", read("/proc/self/status"), re.MULTILINE)
    return int(match.group(1)) if match else 0


def docker_counts(ours: re.Pattern[str]) -> State:
    containers = lines(["docker", "ps", "-a", "--format", "{{.Names}}"])
    return {
        "docker containers": containers,
        "docker containers (this soak's runs)": [name for name in containers if ours.match(name)],
        "docker images": lines(["docker", "images", "-q"]),
        "docker networks": lines(["docker", "network", "ls", "--format", "{{.Name}}"]),
        "docker volumes": lines(["docker", "volume", "ls", "-q"]),
    }


def snapshot(docker: bool, work: Path) -> State:
    """Every count, now (host-wide ones seen from the root network namespace)."""
    history = [line.split()[1] for line in read(str(work / "registry/history.log")).splitlines()]
    ours = re.compile(rf"^vtb-({'|'.join(history) or '-'})-")  # this soak's run ids
    tables = ("iptables-nft-save", "ip6tables-nft-save", "iptables-legacy-save", "ip6tables-legacy-save")
    registry = work / "registry"
    records = [e for e in entries(registry) if e not in ("history.log", "files")]
    state: State = {
        "netns (ip netns list)": [line.split()[0] for line in lines(["ip", "netns", "list"])],
        "netns files (/run/netns)": entries("/run/netns"),
        "netns (this soak's runs)": [name for name in entries("/run/netns") if ours.match(name)],
        "links (root ns)": [line.split(":")[1].strip() for line in lines(["ip", "-o", "link", "show"])],
        "qdiscs (root ns)": lines(["tc", "qdisc", "show"]),
        "iptables rules (-A, all tables)": [f"{t}: {r}" for t in tables for r in lines([t]) if r.startswith("-A")],
        "nftables ruleset lines": lines(["nft", "list", "ruleset"]),
        "conntrack entries (root ns)": int(read("/proc/sys/net/netfilter/nf_conntrack_count") or 0),
        **process_counts(f"TESTBED_REGISTRY={registry}"),
        "harness fds": harness_fds(),
        "harness threads": status("Threads"),
        "mounts (harness)": read("/proc/self/mounts").splitlines(),
        "mounts (pid 1)": read("/proc/1/mounts").splitlines(),
        "files: /tmp": entries("/tmp"),
        "files: /dev/shm": entries("/dev/shm"),
        "files: scratch (browser profiles)": entries(work / "scratch"),
        "files: /run/voip-testbed/scratch": entries("/run/voip-testbed/scratch"),
        "registry records": records + [f"files/{e}" for e in entries(registry / "files")],
    }
    return {**state, **(docker_counts(ours) if docker else {})}


def size(value: list[str] | int) -> int:
    return value if isinstance(value, int) else len(value)


def new_items(before: list[str] | int, after: list[str] | int) -> list[str]:
    """What ``after`` holds that ``before`` did not (with multiplicity)."""
    if isinstance(before, int) or isinstance(after, int):
        return []
    return sorted((collections.Counter(after) - collections.Counter(before)).elements())


def one_run(experiment: Experiment, backend: str, work: Path) -> tuple[float, str]:
    """Run and score the whole scenario into a fresh directory, deleted afterwards: (wall s, outcome)."""
    out = Path(tempfile.mkdtemp(prefix="run-", dir=work))
    started = time.perf_counter()
    try:
        result = experiment.run(out / "run", backend=backend)
        outcome = "passed" if result.verdict.passed else f"failed: {result.verdict.first_failure}"
    except Exception as error:  # noqa: BLE001 - a soak counts failures and goes on
        outcome = f"ERROR {type(error).__name__}: {error}"
    wall = time.perf_counter() - started
    shutil.rmtree(out, ignore_errors=True)
    return wall, outcome


def window(runs: int) -> int:
    """How many of the last runs a trend is taken over: WINDOW, or the last half of fewer than 2 x WINDOW
    runs (the first runs warm caches up)."""
    return min(WINDOW, runs, max(3, runs // 2))


def trend(values: list[float]) -> tuple[float, float, float]:
    """Least-squares slope per run over the last runs (``window``), its standard error, and r."""
    recent = values[-window(len(values)) :]
    if len(recent) < 3 or len(set(recent)) == 1:
        return 0.0, 0.0, 0.0
    fit = stats.linregress(range(len(recent)), recent)
    return float(fit.slope), float(fit.stderr), float(fit.rvalue)


def grown(before: State, after: State) -> list[str]:
    return [name for name in before if name not in INFO and size(after.get(name, 0)) > size(before[name])]


def report(before: State, after: State, peaks: dict[str, int]) -> list[str]:
    """Print the before / after / max table and what each grown count holds now; the grown counts."""
    grew = grown(before, after)
    print(f"{'count':38s}{'before':>8s}{'after':>8s}{'max':>8s}")
    for name in before:
        first, last = size(before[name]), size(after.get(name, 0))
        flag = "GREW" if name in grew else "(info)" if name in INFO else ""
        print(f"{name:38s}{first:8d}{last:8d}{peaks.get(name, last):8d}  {flag}")
    for name in grew:
        print(f"\n{name}: +{size(after[name]) - size(before[name])}, new:")
        for item in new_items(before[name], after[name])[:15]:
            print(f"  {item}")
    return grew


def soak(experiment: Experiment, runs: int, backend: str, work: Path, settle: float) -> Soak:
    """The runs, every count taken before the first, right after each and, settled, after the last."""
    docker = bool(lines(["docker", "version", "-f", "{{.Server.Version}}"]))
    result = Soak(snapshot(docker, work))
    result.peaks = {name: size(value) for name, value in result.before.items()}
    for index in range(1, runs + 1):
        wall, outcome = one_run(experiment, backend, work)
        now = snapshot(docker, work)
        result.peaks = {name: max(result.peaks.get(name, 0), size(value)) for name, value in now.items()}
        for key, value in (
            ("rss_kb", status("VmRSS")),
            ("anon_kb", status("RssAnon")),
            ("file_kb", status("RssFile")),
            ("heap_kb", heap_in_use_kb()),
            ("py_blocks", sys.getallocatedblocks()),
            ("fds", size(now["harness fds"])),
            ("wall_s", wall),
        ):
            result.series[key].append(value)
        moved = [f"{n} {size(v) - size(result.before[n]):+d}" for n, v in now.items() if n not in INFO]
        moved = [text for text in moved if not text.endswith(" +0")]
        print(
            f"run {index}/{runs}: {wall:5.2f} s, RSS {status('VmRSS') / 1024:6.1f} MB, {size(now['harness fds'])} fds, "
            f"{outcome}" + (f"; differs: {', '.join(moved)}" if moved else ""),
            file=sys.stderr,
            flush=True,
        )
        if not outcome.startswith(("passed", "failed")):
            result.failures.append(f"run {index}: {outcome}")
    started = time.monotonic()  # what is still going away (a zombie init has not reaped yet) gets a few
    while True:  # seconds; what is left then is a leak
        result.after, result.settled_s = snapshot(docker, work), time.monotonic() - started
        if not grown(result.before, result.after) or result.settled_s >= settle:
            return result
        time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--backend", choices=("netns", "docker"), default="netns")
    parser.add_argument("--scenario", type=Path, help="default: one 2 s call on an idle link")
    parser.add_argument("--settle", type=float, default=10.0, help="seconds after the last run for leftovers to go")
    parser.add_argument("--json", type=Path, help="write every count and the per-run series here")
    parser.add_argument("--pymalloc", action="store_true", help="keep Python's allocator; judge RSS")
    args = parser.parse_args()
    if not args.pymalloc and os.environ.get("PYTHONMALLOC") != "malloc":  # every byte in malloc's count
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, "PYTHONMALLOC": "malloc"})
    work = private_roots()
    try:
        import testbed  # after TESTBED_REGISTRY / TESTBED_SCRATCH are set

        scenario = args.scenario or work / "soak.yaml"
        if args.scenario is None:
            scenario.write_text(SCENARIO)
        result = soak(testbed.load(scenario), max(1, args.runs), args.backend, work, args.settle)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    before, after = result.before, result.after
    print(f"{args.runs} runs of {scenario} on {args.backend}: counts before the first run, after the last")
    print(f"(settled {result.settled_s:.1f} s), max right after any run")
    if size(before["processes (testbed-like)"]) or size(before["netns (ip netns list)"]):
        print("note: other testbed runs were live at the start: host-wide counts move with them too")
    grew = report(before, after, result.peaks)
    rss, fds = result.series["rss_kb"], result.series["fds"]
    judged = "rss_kb" if args.pymalloc else "heap_kb"
    memory = result.series[judged]
    slope, error, r = trend(memory)
    last = window(len(memory))
    rising = last >= 10 and slope - 2 * error > 0
    print(f"\nharness RSS: {rss[0] / 1024:.1f} MB after run 1, {rss[-1] / 1024:.1f} MB after run {len(rss)}")
    what = "RSS" if args.pymalloc else "memory in use (malloc, PYTHONMALLOC=malloc)"
    print(f"{what}: slope over the last {last} runs {slope:+.1f} +- {error:.1f} kB/run (r {r:+.2f})", end="")
    print("  TRENDS UP" if rising else "  (too few runs to judge)" if last < 10 else "  flat")
    labels = {
        "anon_kb": "RSS, anonymous (heap, stacks)",
        "file_kb": "RSS, file-backed (code and data pages of the interpreter and libraries, touched lazily)",
        "heap_kb": "malloc'd heap in use",
        "py_blocks": "Python's allocated blocks",
    }
    print(f"RSS: slope over the last {last} runs {trend(rss)[0]:+.1f} +- {trend(rss)[1]:.1f} kB/run")
    for name, label in labels.items():
        values = result.series[name]
        fit = trend(values)
        unit = "blocks" if name == "py_blocks" else "kB"
        print(f"{label}: {values[0]:.0f} -> {values[-1]:.0f} {unit}; slope {fit[0]:+.1f} +- {fit[1]:.1f} {unit}/run")
    print(f"fds: {fds[0]:.0f} after run 1, {fds[-1]:.0f} after the last; slope {trend(fds)[0]:+.3f}/run")
    for failure in result.failures:
        print(failure)
    if args.json:
        counts = {
            name: {"before": size(before[name]), "after": size(after[name]), "max": result.peaks[name]}
            | {"new": new_items(before[name], after[name])}
            for name in before
        }
        summary = {"judged": judged, "slope_kb_per_run": slope, "slope_stderr": error, "r": r, "counts": counts}
        summary |= {"series": result.series, "failures": result.failures, "settled_s": result.settled_s}
        args.json.write_text(json.dumps(summary, indent=1))
    sys.exit(1 if grew or rising or result.failures else 0)


if __name__ == "__main__":
    main()
