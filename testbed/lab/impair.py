"""Per-direction link impairment on the egress of one endpoint: rate (HTB), queue limit, and the
netem part (delay, jitter, loss, reorder, duplicate, corrupt).

Layout on the interface: ``root 1: htb default 0x10`` -> ``class 1:10`` (rate = ceil = link rate)
-> leaf ``10:`` (pfifo with the queue limit, or netem when the direction needs it). Without a rate the
HTB class runs at line rate, so every impaired interface looks the same to the queue statistics.

pyroute2 builds the HTB and the pfifo; netem goes through the ``tc`` binary because pyroute2 cannot
set delay distributions or loss models; it runs through ``Node.run``. That boundary stays inside
this module (docs/design.md, "What goes through tc and iptables").
"""

from __future__ import annotations

import errno
from pathlib import Path

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from testbed.errors import CapabilityError, LabError
from testbed.lab import netns
from testbed.lab.backends.base import Node
from testbed.scenario.model import Impairment, LossSpec

ROOT_HANDLE = 0x10000  # 1:
CLASS_ID = 0x10010  # 1:10
LEAF_HANDLE = 0x100000  # 10:
TC_H_ROOT = 0xFFFFFFFF
LINE_RATE = 10_000_000_000  # "no rate": 10 Gbit, above anything veth carries here
DEFAULT_QUEUE_LIMIT = 1000  # packets; a consumer modem's deep buffer
MTU_BYTES = 1514


def burst_bytes(rate: int) -> int:
    """HTB bucket: one millisecond at the rate plus one full frame (the kernel's own rule of thumb)."""
    return rate // 8 // 1000 + MTU_BYTES


def _percent(value: float) -> str:
    return f"{value:g}%"


def _microseconds(seconds: float) -> str:
    return f"{round(seconds * 1e6)}us"


def _loss_arguments(loss: LossSpec) -> list[str]:
    if loss.model == "random":
        arguments = ["loss", "random", _percent(loss.rate or 0)]
        return arguments + ([_percent(loss.correlation)] if loss.correlation else [])
    if loss.model == "gilbert_elliott":
        # netem's gemodel: p, r, 1-h (loss in bad state), 1-k (loss in good state)
        return [
            "loss",
            "gemodel",
            _percent(loss.p or 0),
            _percent(loss.r or 0),
            _percent(loss.loss_bad),
            _percent(loss.loss_good),
        ]
    return [
        "loss",
        "state",
        _percent(loss.p13 or 0),
        _percent(loss.p31 or 0),
        _percent(loss.p32),
        _percent(loss.p23),
        _percent(loss.p14),
    ]


def netem_arguments(impairment: Impairment, limit: int) -> list[str]:
    """The ``tc qdisc ... netem`` arguments for one direction (pure; unit-tested)."""
    arguments = ["limit", str(limit)]
    if impairment.delay or impairment.jitter:
        arguments += ["delay", _microseconds(impairment.delay)]
        if impairment.jitter:
            arguments += [_microseconds(impairment.jitter)]
            if impairment.delay_correlation:
                arguments += [_percent(impairment.delay_correlation)]
            if impairment.jitter_distribution != "uniform":  # netem's built-in default; tc has no uniform table
                arguments += ["distribution", impairment.jitter_distribution]
    if impairment.loss is not None:
        arguments += _loss_arguments(impairment.loss)
    if impairment.reorder:
        arguments += ["reorder", _percent(impairment.reorder)]
        if impairment.reorder_correlation:
            arguments += [_percent(impairment.reorder_correlation)]
    if impairment.duplicate:
        arguments += ["duplicate", _percent(impairment.duplicate)]
    if impairment.corrupt:
        arguments += ["corrupt", _percent(impairment.corrupt)]
    return arguments


def netem_queue_limit(impairment: Impairment) -> int:
    """netem holds delayed packets in its queue: room for the queue limit plus rate x max delay."""
    limit = impairment.queue_limit or DEFAULT_QUEUE_LIMIT
    if impairment.rate:
        max_delay = impairment.delay + 3 * impairment.jitter
        limit += int(impairment.rate / 8 / 64 * max_delay) + 1  # worst case: 64-byte packets
    return limit


def try_netem(ipr: IPRoute, index: int) -> None:
    """Add a netem root qdisc to one interface and remove it; NetlinkError when the kernel has no sch_netem."""
    ipr.tc("add", "netem", index, ROOT_HANDLE, delay=1000)
    ipr.tc("del", index=index, root=True)


def netem_works(namespace: Path | None = None) -> bool:
    """Whether this kernel runs sch_netem: tried on the loopback of ``namespace`` (default: a throwaway one)."""

    def check() -> bool:
        with IPRoute() as ipr:
            try:
                try_netem(ipr, ipr.link_lookup(ifname="lo")[0])
            except NetlinkError:
                return False
        return True

    if namespace is not None:
        return netns.run_in(namespace, check)
    try:
        return netns.in_scratch_namespace(check)
    except PermissionError:
        return False  # not root: no namespace to try in, so no netem for labs either


def require_netem(needs: bool, netem_available: bool, where: str) -> None:
    if needs and not netem_available:
        raise CapabilityError(
            f"{where} needs sch_netem (delay, jitter, loss, reorder, duplicate or corrupt), which this kernel "
            "lacks: install your distribution's full kernel modules (e.g. linux-modules-extra-$(uname -r)) "
            "or use a stock kernel, or let the userspace engine do it (impairment_engine: userspace or auto, "
            "`--impairment-engine`); rate-only links work without it (`testbed doctor` shows what is missing)"
        )


def handle_text(handle: int) -> str:
    """0x10010 -> '1:10', as the tc binary writes handles."""
    return f"{handle >> 16:x}:{handle & 0xFFFF:x}"


def install_leaf(
    ipr: IPRoute, node: Node, ifname: str, parent: int, handle: int, impairment: Impairment, queue_limit: int
) -> None:
    """The queue under an HTB class: pfifo with the queue limit, or netem when the direction needs it."""
    if not impairment.needs_netem():
        index = ipr.link_lookup(ifname=ifname)[0]
        ipr.tc("replace", "pfifo", index, handle, parent=parent, limit=queue_limit)
        return
    limit = netem_queue_limit(impairment.model_copy(update={"queue_limit": queue_limit}))
    command = [
        "tc",
        "qdisc",
        "replace",
        "dev",
        ifname,
        "parent",
        handle_text(parent),
        "handle",
        handle_text(handle),
        "netem",
        *netem_arguments(impairment, limit),
    ]
    result = node.run(command, timeout=10)
    output = result.stdout + result.stderr
    if result.returncode != 0 and "qdisc kind is unknown" in output:
        require_netem(True, False, f"the egress of {ifname} in {node.name}")
    if result.returncode != 0:
        raise LabError(f"`{' '.join(command)}` in {node.name} failed: {output.strip()}")


def clear_root(ipr: IPRoute, ifname: str) -> None:
    """Remove whatever root qdisc the interface has (there may be none)."""
    index = ipr.link_lookup(ifname=ifname)[0]
    try:
        ipr.tc("del", index=index, root=True)
    except NetlinkError as exc:
        if exc.code not in (errno.ENOENT, errno.EINVAL):
            raise


def _has_htb_root(ipr: IPRoute, index: int) -> bool:
    return any(
        q.get("handle") == ROOT_HANDLE and q.get("parent") == TC_H_ROOT and q.get_attr("TCA_KIND") == "htb"
        for q in ipr.get_qdiscs(index=index)
    )


def apply(ipr: IPRoute, node: Node, ifname: str, impairment: Impairment) -> None:
    """Install the impairment on ``ifname``'s egress in ``node`` (replacing what was there)."""
    index = ipr.link_lookup(ifname=ifname)[0]
    rate = impairment.rate or LINE_RATE
    burst = impairment.burst or burst_bytes(rate)
    if not _has_htb_root(ipr, index):  # HTB has no change operation: an existing root is kept as it is
        ipr.tc("replace", "htb", index, ROOT_HANDLE, default=0x10)  # a timeline change keeps the queue
    ipr.tc(
        "replace-class",
        "htb",
        index,
        CLASS_ID,
        parent=ROOT_HANDLE,
        rate=f"{rate}bit",
        ceil=f"{rate}bit",
        burst=burst,
        cburst=burst,
        prio=0,
    )
    install_leaf(ipr, node, ifname, CLASS_ID, LEAF_HANDLE, impairment, impairment.queue_limit or DEFAULT_QUEUE_LIMIT)
