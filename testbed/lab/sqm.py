"""``kind: sqm`` router templates: the smart queue of a home or small-office router (OpenWrt SQM,
Ubiquiti smart queues) on each router side, shaped to the rate of the router's end of the link.

- ``cake``: one qdisc that shapes, isolates flows (by the addresses before NAT with ``nat``) and sorts
  DSCP into tins (``diffserv4``: bulk CS1, best effort, video AF4x/CS3-CS4, voice EF/VA/CS5-CS7), as
  OpenWrt's piece_of_cake / layer_cake scripts set it.
- ``fq_codel``: an HTB shaper at the link rate with fq_codel as its queue (OpenWrt's simplest.qos).
- ``prio``: an HTB shaper at the link rate over a three-band strict-priority qdisc: EF, VA and CS5-CS7
  in the first band, CS1 (scavenger) in the last, everything else between; pfifo per band.

None of these qdiscs is in every kernel (this CI's has none): a missing one stops the run with exit 3
and the remedy (``testbed doctor`` lists them). pyroute2 for cake and fq_codel; the tc binary for prio,
which pyroute2 does not know.
"""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Iterator

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from testbed.errors import CapabilityError, InputError, LabError
from testbed.lab import impair
from testbed.lab.backends.base import Node
from testbed.lab.tools import run_tool
from testbed.scenario.model import Impairment
from testbed.scenario.router_template import SqmSpec

__all__ = ["PRIO_BANDS", "install_fq_codel_leaf", "install_sqm", "prio_commands"]

ROOT, SHAPER, QUEUE = 0x10000, 0x10001, 0x100000  # 1:, 1:1, 10:
KERNEL_MODULES = "your distribution's full kernel modules (e.g. linux-modules-extra-$(uname -r)) or a stock kernel"
PRIO_BANDS = {  # DSCP -> band (1 first); the rest goes to band 2
    **{dscp: 1 for dscp in (46, 44, 40, 48, 56)},  # EF, VA, CS5, CS6, CS7
    8: 3,  # CS1: scavenger
}


def _missing(qdisc: str, ifname: str) -> CapabilityError:
    return CapabilityError(
        f"the router template's sqm qdisc {qdisc} (on {ifname}) is missing from this kernel (sch_{qdisc}): "
        f"install {KERNEL_MODULES}; `testbed doctor` lists the qdiscs this host has"
    )


@contextlib.contextmanager
def _kernel_qdisc(qdisc: str, ifname: str) -> Iterator[None]:
    """Netlink's answer to a qdisc kind the kernel does not have, as the missing-module error."""
    try:
        yield
    except NetlinkError as exc:
        if exc.code in (errno.ENOENT, errno.EOPNOTSUPP, errno.EINVAL):
            raise _missing(qdisc, ifname) from None
        raise


def prio_commands(ifname: str, queue_limit: int) -> list[list[str]]:
    """tc commands for the prio qdisc under the shaper (pure; unit-tested): three bands, everything to
    band 2 by default, DSCP filters for bands 1 and 3, ARP in band 1, pfifo per band."""
    commands = [
        ["tc", "qdisc", "add", "dev", ifname, "parent", "1:1", "handle", "10:", "prio", "bands", "3", "priomap"]
        + ["1"] * 16
    ]
    commands += [
        ["tc", "qdisc", "add", "dev", ifname, "parent", f"10:{band}", "handle", f"1{band}:", "pfifo"]
        + ["limit", str(queue_limit)]
        for band in (1, 2, 3)
    ]
    commands.append(["tc", "filter", "add", "dev", ifname, "parent", "10:", "prio", "1", "protocol", "arp"])
    commands[-1] += ["u32", "match", "u32", "0", "0", "flowid", "10:1"]
    for dscp, band in PRIO_BANDS.items():
        commands.append(
            ["tc", "filter", "add", "dev", ifname, "parent", "10:", "prio", "2", "protocol", "ip", "u32"]
            + ["match", "ip", "dsfield", f"0x{dscp << 2:02x}", "0xfc", "flowid", f"10:{band}"]
        )
    return commands


def install_sqm(ipr: IPRoute, node: Node, ifname: str, spec: SqmSpec, rate: int) -> dict[str, str]:
    """Replace the interface's egress with the smart queue shaped to ``rate`` (bit/s); returns tc handle
    -> name for queue stats."""
    index = ipr.link_lookup(ifname=ifname)[0]
    impair.clear_root(ipr, ifname)
    with _kernel_qdisc(spec.qdisc, ifname):
        if spec.qdisc == "cake":
            ipr.tc("add", "cake", index, ROOT, bandwidth=rate, diffserv_mode=spec.diffserv, nat=spec.nat)
            return {}
        ipr.tc("add", "htb", index, ROOT, default=1)
        burst = impair.burst_bytes(rate)
        ipr.tc("add-class", "htb", index, SHAPER, parent=ROOT, rate=f"{rate}bit", ceil=f"{rate}bit", burst=burst)
        if spec.qdisc == "fq_codel":
            ipr.tc("add", "fq_codel", index, QUEUE, parent=SHAPER)
    if spec.qdisc == "prio":
        for argv in prio_commands(ifname, spec.queue_limit or impair.DEFAULT_QUEUE_LIMIT):
            try:
                run_tool(node, argv)
            except LabError as exc:
                if "unknown" in str(exc).lower():
                    raise _missing("prio", ifname) from None
                raise
    return {impair.handle_text(SHAPER): "link"}


def install_fq_codel_leaf(ipr: IPRoute, ifname: str, parent: int, handle: int, impairment: Impairment) -> None:
    """A class's queue as fq_codel (``leaf: fq_codel``), as OpenWrt's simple.qos puts under its classes."""
    if impairment.needs_netem():
        raise InputError(
            f"a class with leaf fq_codel on {ifname} cannot also carry the link's delay/loss (netem is a "
            f"leaf too): put them on the other end of link {ifname!r}"
        )
    with _kernel_qdisc("fq_codel", ifname):
        ipr.tc("replace", "fq_codel", ipr.link_lookup(ifname=ifname)[0], handle, parent=parent)
