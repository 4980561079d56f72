"""What this host can do: root, kernel qdiscs and classifiers, IFB, DSCP in iptables/nftables,
a Docker engine, espeak-ng. Each check really tries the thing (in a scratch namespace), because a
module that ``modinfo`` lists can still be missing from a custom kernel, as sch_netem is here.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from testbed.errors import CapabilityError
from testbed.lab import impair, iptables, netns
from testbed.lab.backends.base import run_in_namespace
from testbed.lab.registry import Registry, Resource

KERNEL_EXTRA = "linux-modules-extra-$(uname -r) (Ubuntu) or your distribution's full kernel modules package"


@dataclass(frozen=True)
class Capability:
    name: str
    available: bool
    detail: str
    disables: str  # what does not work without it
    remedy: str  # how to get it

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


# name -> (what it disables, how to get it)
_NEEDS: dict[str, tuple[str, str]] = {
    "root": ("everything that builds a lab", "run as root, e.g. `sudo testbed ...`"),
    "netns": ("the netns backend", "a kernel with CONFIG_NET_NS (every distribution kernel)"),
    "veth": ("all labs", "the veth module (CONFIG_VETH)"),
    "bridge": ("segments with more than two endpoints", "the bridge module (CONFIG_BRIDGE)"),
    "htb": ("rate limits and router QoS templates", f"sch_htb from {KERNEL_EXTRA}"),
    "tbf": ("token-bucket rate limits", f"sch_tbf from {KERNEL_EXTRA}"),
    "netem": (
        "kernel delay/jitter/loss (the userspace engine or the netem VM stand in)",
        f"sch_netem from {KERNEL_EXTRA}",
    ),
    "prio": ("sqm templates with qdisc prio (sqm-prio), tc-scripts that use prio", f"sch_prio from {KERNEL_EXTRA}"),
    "fq_codel": (
        "sqm templates with qdisc fq_codel, classes with leaf: fq_codel (sqm-fq-codel, simple-qos)",
        f"sch_fq_codel from {KERNEL_EXTRA}",
    ),
    "cake": ("sqm templates with qdisc cake (sqm-cake)", f"sch_cake from {KERNEL_EXTRA}"),
    "police": (
        "tc's policer for policed classes (police: true): iptables' hashlimit stands in, with a 1 s burst",
        f"act_police from {KERNEL_EXTRA}",
    ),
    "hashlimit": (
        "policed priority classes (police: true) where tc's police action is missing too",
        "apt-get install iptables; the xt_hashlimit module",
    ),
    "classify": (
        "classes that match LAN sources behind NAT (from: on a WAN with nat)",
        "apt-get install iptables; the xt_CLASSIFY module",
    ),
    "u32": ("DSCP and port classification in router templates", f"cls_u32 from {KERNEL_EXTRA}"),
    "ingress": ("ingress DSCP handling (bleach/remark) via tc", f"sch_ingress from {KERNEL_EXTRA}"),
    "ifb": ("ingress shaping", f"the ifb module from {KERNEL_EXTRA}"),
    "tc": ("netem distributions and loss models, tc-script templates", "apt-get install iproute2"),
    "iptables-dscp": (
        "DSCP marking of calls and the userspace impairment engine",
        "apt-get install iptables (and the xt_DSCP/xt_dscp modules)",
    ),
    "nftables": ("nftables-based DSCP rules", "apt-get install nftables"),
    "nfqueue": (
        "the userspace impairment engine (delay and loss where sch_netem is missing)",
        "apt-get install iptables; the xt_NFQUEUE and nfnetlink_queue modules",
    ),
    "docker": ("the docker backend", "apt-get install docker.io and start dockerd"),
    "espeak-ng": ("regenerating the reference speech clips", "apt-get install espeak-ng"),
    "chromium": ("browser call endpoints (endpoint: chromium)", "apt-get install chromium (make setup does)"),
    "coturn": ("the edge's STUN/TURN server (edge.turn)", "apt-get install coturn (make setup does)"),
}


def _tc_qdisc(kind: str, **args: object) -> Callable[[IPRoute, int], None]:
    def check(ipr: IPRoute, index: int) -> None:
        ipr.tc("add", kind, index, 0x10000, **args)
        ipr.tc("del", index=index, root=True)

    return check


def _u32(ipr: IPRoute, index: int) -> None:
    ipr.tc("add", "htb", index, 0x10000, default=0x10)
    try:
        ipr.tc("add-filter", "u32", index, parent=0x10000, prio=1, protocol=0x0800, target=0x10010, keys=["0x0/0x0+0"])
    finally:
        ipr.tc("del", index=index, root=True)


def _ingress(ipr: IPRoute, index: int) -> None:
    ipr.tc("add", "ingress", index, 0xFFFF0000)
    ipr.tc("del", "ingress", index, 0xFFFF0000)


def _link_kind(kind: str) -> Callable[[IPRoute, int], None]:
    def check(ipr: IPRoute, index: int) -> None:
        ipr.link("add", ifname=f"probe-{kind}", kind=kind)
        ipr.link("del", ifname=f"probe-{kind}")

    return check


_KERNEL_CHECKS: dict[str, Callable[[IPRoute, int], None]] = {
    "bridge": _link_kind("bridge"),
    "htb": _tc_qdisc("htb", default=0x10),
    "tbf": _tc_qdisc("tbf", rate=1_000_000, burst=16_000, latency=50_000),
    "netem": impair.try_netem,
    "fq_codel": _tc_qdisc("fq_codel"),
    "cake": _tc_qdisc("cake"),
    "u32": _u32,
    "ingress": _ingress,
    "ifb": _link_kind("ifb"),
}


def _run(argv: list[str], namespace_path: Path) -> tuple[bool, str]:
    """Run a host tool in the scratch namespace as a lab node would (``Node.run``)."""
    try:
        result = run_in_namespace(namespace_path, argv, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, str(exc)
    out = (result.stdout + result.stderr).strip()
    return result.returncode == 0, out.splitlines()[-1] if out else ""


def _capability(name: str, available: bool, detail: str) -> Capability:
    disables, remedy = _NEEDS[name]
    return Capability(name, available, detail, disables, remedy)


def _kernel_capabilities(registry: Registry) -> list[Capability]:
    """Try veth, qdiscs, classifiers and iptables in a scratch namespace that is removed afterwards."""
    from testbed.lab.cleanup import remove_run

    results: list[Capability] = []
    run = registry.new_run("doctor")
    namespace = f"vtb-{run.run_id}-probe"
    registry.add(run, Resource("netns", namespace, {"node": "probe", "kind": "probe"}))
    try:
        try:
            path = netns.create(namespace)
        except OSError as exc:
            return [_capability("netns", False, str(exc))]
        results.append(_capability("netns", True, "network namespaces work"))
        with IPRoute(fileno=netns.netlink_socket(path).detach()) as ipr:
            try:
                ipr.link("add", ifname="probe0", kind="veth", peer={"ifname": "probe1"})
                index = ipr.link_lookup(ifname="probe0")[0]
                ipr.link("set", index=index, state="up")
                results.append(_capability("veth", True, "veth pairs can be created"))
            except NetlinkError as exc:
                return results + [_capability("veth", False, str(exc))]
            for name, check in _KERNEL_CHECKS.items():
                try:
                    check(ipr, index)
                    results.append(_capability(name, True, "works"))
                except NetlinkError as exc:
                    results.append(
                        _capability(name, False, f"kernel says: {exc.args[1] if len(exc.args) > 1 else exc}")
                    )
        ok, out = _run(["tc", "qdisc", "add", "dev", "probe0", "root", "handle", "1:", "prio"], path)
        results.append(_capability("prio", ok, "works" if ok else f"tc says: {out}"))
        _run(["tc", "qdisc", "del", "dev", "probe0", "root"], path)
        ok, out = _run(["tc", "qdisc", "add", "dev", "probe0", "ingress"], path)
        police = ["tc", "filter", "add", "dev", "probe0", "parent", "ffff:", "protocol", "ip", "u32"]
        police += ["match", "u32", "0", "0", "action", "police"]
        ok, out = _run([*police, "rate", "1mbit", "burst", "10k", "drop"], path) if ok else (ok, out)
        results.append(_capability("police", ok, "works" if ok else f"tc says: {out}"))
        if shutil.which(iptables.IPTABLES):
            ok, out = _run(
                [
                    iptables.IPTABLES,
                    "-t",
                    "mangle",
                    "-A",
                    "POSTROUTING",
                    "-m",
                    "dscp",
                    "--dscp",
                    "46",
                    "-j",
                    "DSCP",
                    "--set-dscp",
                    "0",
                ],
                path,
            )
            results.append(_capability("iptables-dscp", ok, "dscp match and DSCP target work" if ok else out))
            ok, out = _run(
                [
                    iptables.IPTABLES,
                    "-t",
                    "mangle",
                    "-A",
                    "POSTROUTING",
                    "-o",
                    "probe0",
                    "-j",
                    "NFQUEUE",
                    "--queue-num",
                    "0",
                    "--queue-bypass",
                ],
                path,
            )
            results.append(_capability("nfqueue", ok, "NFQUEUE target works" if ok else out))
            limit = ["-m", "hashlimit", "--hashlimit-above", "1000b/s", "--hashlimit-name", "probe", "-j", "DROP"]
            ok, out = _run([iptables.IPTABLES, "-t", "mangle", "-A", "POSTROUTING", *limit], path)
            results.append(_capability("hashlimit", ok, "hashlimit (byte mode) works" if ok else out))
            ok, out = _run(
                [iptables.IPTABLES, "-t", "mangle", "-A", "POSTROUTING", "-j", "CLASSIFY", "--set-class", "1:10"], path
            )
            results.append(_capability("classify", ok, "CLASSIFY target works" if ok else out))
        else:
            results.append(_capability("iptables-dscp", False, f"no {iptables.IPTABLES} command"))
            results.append(_capability("nfqueue", False, f"no {iptables.IPTABLES} command"))
        if shutil.which("nft"):
            ok, out = _run(["nft", "add", "table", "inet", "probe"], path)
            results.append(_capability("nftables", ok, "works" if ok else out))
        else:
            results.append(_capability("nftables", False, "no nft command"))
    finally:
        remove_run(registry, registry.load(run.run_id) or run)
    return results


def _docker() -> Capability:
    from testbed.lab.backends.docker import client

    try:
        engine = client(timeout=3)
        version = engine.version().get("Version", "?")
        engine.close()
        return _capability("docker", True, f"engine {version}")
    except CapabilityError as exc:
        return _capability("docker", False, str(exc))
    except Exception as exc:  # the SDK raises many kinds; all mean "not usable"
        return _capability("docker", False, f"no engine reachable ({type(exc).__name__})")


def probe(registry: Registry | None = None) -> list[Capability]:
    """Every capability, available or not, in a stable order."""
    results = []
    is_root = os.geteuid() == 0
    results.append(_capability("root", is_root, "running as root" if is_root else f"running as uid {os.geteuid()}"))
    if is_root:
        results.extend(_kernel_capabilities(registry or Registry()))
    tc = shutil.which("tc")
    results.append(_capability("tc", tc is not None, tc or "no tc command"))
    results.append(_docker())
    espeak = shutil.which("espeak-ng")
    results.append(_capability("espeak-ng", espeak is not None, espeak or "no espeak-ng command"))
    results.append(_chromium())
    turnserver = shutil.which("turnserver")
    results.append(_capability("coturn", turnserver is not None, turnserver or "no turnserver command"))
    return results


def _chromium() -> Capability:
    """The browser the chromium endpoint drives (``TESTBED_CHROMIUM`` or Debian's), and Playwright."""
    path = os.environ.get("TESTBED_CHROMIUM", "/usr/bin/chromium")
    if importlib.util.find_spec("playwright") is None:
        return _capability("chromium", False, "the playwright package is missing (pip install -e .)")
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return _capability("chromium", False, f"no browser at {path}")
    return _capability("chromium", bool(out), out.splitlines()[-1] if out else f"{path} --version said nothing")


def has(capabilities: list[Capability], name: str) -> bool:
    return any(c.name == name and c.available for c in capabilities)


def impairment_engine(capabilities: list[Capability]) -> str | None:
    """What `impairment_engine: auto` uses on this host: netem, userspace, or None (rate limits only)."""
    if has(capabilities, "netem"):
        return "netem"
    return "userspace" if has(capabilities, "nfqueue") else None


ESSENTIAL = ("root", "netns", "veth", "htb", "u32")
