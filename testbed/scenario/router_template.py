"""Router QoS templates (``scenarios/routers/*.yaml``): egress classes per router side, DSCP handling.

A template says what the router does to traffic leaving it: on the WAN side (upstream) and the LAN side
(downstream). ``kind: tc-script`` instead carries the user's own tc commands, so a team can test the
exact script it deploys.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from testbed import units
from testbed.errors import InputError
from testbed.scenario.types import Dscp, Name, Size, Strict

MEDIA = "media"  # a rule's name for the vendor's media prefix (the scenario's edge.media_prefix)
_PORTS = re.compile(r"^(\d{1,5})(?:-(\d{1,5}))?$")


def parse_ports(value: Any) -> list[str]:
    """``443``, ``"10000-60000"`` or a list of them -> canonical texts (``"443"``, ``"10000-60000"``)."""
    items = value if isinstance(value, list) else [value]
    result = []
    for item in items:
        match = _PORTS.match(str(item).strip())
        low, high = (int(match[1]), int(match[2] or match[1])) if match else (-1, -1)
        if not match or not 1 <= low <= high <= 65535:
            raise ValueError(f"{item!r} is not a port or port range; use e.g. 443 or 10000-60000 (1-65535)")
        result.append(f"{low}-{high}" if low != high else str(low))
    return result


def parse_share(value: object) -> str:
    """Validate ``30%`` (of the link rate) or an absolute rate such as ``2mbit``; keep the text."""
    text = str(value).strip()
    if text.endswith("%"):
        percent = units.parse_percent(text)
        if percent <= 0:
            raise ValueError(f"{text!r}: a class needs more than 0% of the link")
    else:
        units.parse_rate(text)
    return text


def resolve_prefixes(
    prefixes: Sequence[ipaddress.IPv4Network | str], media: ipaddress.IPv4Network | None, where: str
) -> list[ipaddress.IPv4Network]:
    """A match's prefixes with ``media`` replaced by the scenario's edge.media_prefix."""
    resolved = []
    for prefix in prefixes:
        if isinstance(prefix, ipaddress.IPv4Network):
            resolved.append(prefix)
        elif media is None:
            raise InputError(
                f"{where} says 'media', but the scenario names no edge.media_prefix "
                "(e.g. edge: {media_prefix: 203.0.113.0/24})"
            )
        else:
            resolved.append(media)
    return resolved


def resolve_share(text: str, link_rate: int) -> int:
    """``30%`` of a 10 Mbit link -> 3_000_000 bit/s; an absolute rate is returned as it is."""
    if text.endswith("%"):
        return int(link_rate * units.parse_percent(text) / 100)
    return units.parse_rate(text)


Prefix = ipaddress.IPv4Network | Literal["media"]


class ClassMatch(Strict):
    """Packets that belong to a class: every field given must hold (any listed DSCP, the protocol, any
    listed port as source or destination, any listed source and destination prefix)."""

    dscp: list[Dscp] = Field(default_factory=list)
    protocol: Literal["udp", "tcp", "icmp"] | None = None
    ports: list[str] = Field(default_factory=list, description="source or destination port, e.g. 443, 10000-60000")
    to: list[Prefix] = Field(
        default_factory=list,
        description="destination prefixes, e.g. the vendor's media range 203.0.113.0/24; 'media' is the "
        "scenario's edge.media_prefix",
    )
    from_: list[Prefix] = Field(
        default_factory=list,
        alias="from",
        description="source prefixes (a LAN's, behind NAT, are matched before the translation)",
    )

    @field_validator("ports", mode="before")
    @classmethod
    def _ports(cls, value: Any) -> Any:
        return parse_ports(value)

    @field_validator("to", "from_", mode="before")
    @classmethod
    def _prefixes(cls, value: Any) -> Any:
        return value if isinstance(value, list) else [value]

    @model_validator(mode="after")
    def _ports_need_protocol(self) -> ClassMatch:
        if self.ports and self.protocol not in ("udp", "tcp"):
            raise ValueError("a port match needs protocol: udp or tcp")
        if not self.dscp and self.protocol is None and not self.to and not self.from_:
            raise ValueError("a match needs dscp, protocol, ports or prefixes (to, from)")
        return self


class TrafficClass(Strict):
    """One HTB class: guaranteed ``rate``, borrowing up to ``ceil``; lower ``priority`` is served first.
    ``police``: a low-latency-queuing priority class (Cisco's ``priority percent N``): what goes above
    its rate is dropped, never borrowed, so it cannot starve the others."""

    name: Name
    match: list[ClassMatch] = Field(default_factory=list, description="any of these matches")
    priority: int = Field(default=4, ge=0, le=7)
    rate: str = "10%"
    ceil: str = "100%"
    queue_limit: int | None = Field(default=None, ge=1, le=100_000, description="packets")
    default: bool = False
    police: bool = Field(default=False, description="drop what exceeds rate (a policed priority queue); no ceil")
    leaf: Literal["pfifo", "fq_codel"] = Field(
        default="pfifo",
        description="the class's queue: pfifo (queue_limit packets) or fq_codel (flow queues with CoDel, as "
        "OpenWrt's simple.qos; the kernel must have sch_fq_codel)",
    )

    @field_validator("rate", "ceil", mode="before")
    @classmethod
    def _share(cls, value: object) -> str:
        return parse_share(value)

    @model_validator(mode="before")
    @classmethod
    def _policed_ceil(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("police") is True and "ceil" not in data:
            return {**data, "ceil": data.get("rate", "10%")}  # a policed class never borrows
        return data

    @model_validator(mode="after")
    def _policed_never_borrows(self) -> TrafficClass:
        if self.police and self.ceil != self.rate:
            raise ValueError(f"class {self.name!r} is policed at its rate {self.rate}: it takes no ceil")
        if self.police and self.default:
            raise ValueError(f"class {self.name!r}: the default class cannot be policed")
        return self


class EgressPolicy(Strict):
    """The classes of one router interface; exactly one is the default."""

    classes: list[TrafficClass] = Field(min_length=1)
    queue_limit: int | None = Field(default=None, ge=1, le=100_000, description="packets, for classes that set none")

    @model_validator(mode="after")
    def _one_default(self) -> EgressPolicy:
        defaults = [c.name for c in self.classes if c.default]
        if len(defaults) != 1:
            raise ValueError(f"exactly one class must be 'default: true' (found {len(defaults)})")
        names = [c.name for c in self.classes]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate class name {duplicates[0]!r}")
        guaranteed = sum(units.parse_percent(c.rate) for c in self.classes if c.rate.endswith("%"))
        if guaranteed > 100 + 1e-9:
            raise ValueError(f"the classes' rates add up to {guaranteed:g}% of the link (at most 100%)")
        for c in self.classes:
            if (
                c.rate.endswith("%")
                and c.ceil.endswith("%")
                and units.parse_percent(c.ceil) < units.parse_percent(c.rate)
            ):
                raise ValueError(f"class {c.name!r}: ceil {c.ceil} is below its rate {c.rate}")
        return self


class SqmSpec(Strict):
    """A home or small-office router's smart queue (OpenWrt SQM, Ubiquiti smart queues) on each router
    side, shaped to the rate of the router's end of that link."""

    qdisc: Literal["cake", "fq_codel", "prio"] = Field(
        description="cake (its own shaper, diffserv tins); fq_codel or prio under an HTB shaper"
    )
    diffserv: Literal["besteffort", "diffserv3", "diffserv4", "diffserv8"] = Field(
        default="diffserv4", description="cake: the tins DSCP sorts into (diffserv4: bulk, best effort, video, voice)"
    )
    nat: bool = Field(default=False, description="cake: flow isolation by the addresses before NAT (cake's nat)")
    queue_limit: int | None = Field(default=None, ge=1, le=100_000, description="prio: packets per band")

    @model_validator(mode="after")
    def _cake_options(self) -> SqmSpec:
        if self.qdisc != "cake" and ("diffserv" in self.model_fields_set or self.nat):
            raise ValueError(f"diffserv and nat are cake's options, not {self.qdisc}'s")
        return self


class DscpRemark(Strict):
    from_: Dscp = Field(alias="from")
    to: Dscp


SCRIPT_PLACEHOLDERS = ("wan", "lan", "wan_rate", "lan_rate")
_PLACEHOLDER = re.compile(r"{([^{}]*)}")


def script_commands(script: str) -> list[tuple[int, str]]:
    """The commands of a tc-script as (line number in the script, text); comments and blanks dropped."""
    commands = []
    for number, line in enumerate(script.splitlines(), start=1):
        text = line.strip()
        if text and not text.startswith("#"):
            commands.append((number, text))
    return commands


class FirewallRule(Strict):
    """Forwarded LAN -> WAN traffic this rule decides: by protocol, destination ports and prefixes."""

    action: Literal["accept", "drop", "reject"] = "accept"
    protocol: Literal["udp", "tcp", "icmp"] | None = None
    ports: list[str] = Field(default_factory=list, description="destination ports, e.g. 443 or 10000-60000")
    to: list[ipaddress.IPv4Network | Literal["media"]] = Field(
        default_factory=list,
        description="destination prefixes (any if none); 'media' is the scenario's edge.media_prefix",
    )

    @field_validator("ports", mode="before")
    @classmethod
    def _ports(cls, value: Any) -> Any:
        return parse_ports(value)

    @field_validator("to", mode="before")
    @classmethod
    def _prefixes(cls, value: Any) -> Any:
        return value if isinstance(value, list) else [value]

    @model_validator(mode="after")
    def _ports_need_protocol(self) -> FirewallRule:
        if self.ports and self.protocol not in ("udp", "tcp"):
            raise ValueError("a port match needs protocol: udp or tcp")
        return self


class Firewall(Strict):
    """A stateful firewall on the router: LAN -> WAN by ``rules`` (first match wins, else ``default``),
    replies by conntrack state, nothing new from the WAN."""

    default: Literal["accept", "drop", "reject"] = "drop"
    rules: list[FirewallRule] = Field(default_factory=list)
    udp_timeout: int | None = Field(
        default=None, ge=1, le=86_400, description="s: conntrack UDP timeout (kernel default 30)"
    )
    udp_stream_timeout: int | None = Field(
        default=None, ge=1, le=86_400, description="s: conntrack timeout of UDP flows seen both ways (default 120)"
    )


class RouterTemplate(Strict):
    """A whole router template file."""

    description: str = ""
    kind: Literal["classes", "tc-script", "sqm"] = "classes"
    ingress_dscp: Literal["trust", "bleach", "remark"] = Field(
        default="trust", description="what the router does to DSCP of packets it receives (on WAN and LAN)"
    )
    remark: list[DscpRemark] = Field(default_factory=list)
    wan: EgressPolicy | None = Field(default=None, description="egress towards the WAN (upstream)")
    lan: EgressPolicy | None = Field(default=None, description="egress towards the LAN (downstream)")
    control_class: str | None = Field(
        default=None,
        description="class for ARP and IPv6 neighbour discovery; default: the highest-priority "
        "class; 'none' leaves them in the default class (they can then starve behind bulk traffic)",
    )
    sqm: SqmSpec | None = Field(default=None, description="kind sqm: the smart queue on both router sides")
    script: str | None = Field(
        default=None, description="tc-script: tc commands with {wan} {lan} {wan_rate} {lan_rate}, one per line"
    )
    burst: Size | None = Field(default=None, description="HTB burst; default sized for the rate")
    firewall: Firewall | None = Field(default=None, description="a stateful firewall for forwarded traffic")
    nat: Literal["none", "masquerade", "symmetric"] = Field(
        default="none",
        description="address translation of the LAN behind the WAN address (RFC 4787): masquerade = "
        "endpoint-independent mapping (ports kept), symmetric = a random port per flow; both filter "
        "by address and port (only replies come in)",
    )

    @model_validator(mode="after")
    def _kind_fields(self) -> RouterTemplate:
        if self.kind == "tc-script":
            if not self.script:
                raise ValueError("kind tc-script needs 'script'")
            if self.wan or self.lan:
                raise ValueError("kind tc-script takes its egress from 'script'; remove 'wan'/'lan' classes")
            _check_script(self.script)
        if self.kind == "classes" and self.script:
            raise ValueError("'script' belongs to kind tc-script")
        if (self.kind == "sqm") != (self.sqm is not None):
            raise ValueError("kind sqm needs 'sqm: {qdisc: ...}', and 'sqm' needs kind: sqm")
        if self.kind == "sqm" and (self.wan or self.lan or self.script):
            raise ValueError("kind sqm takes its egress from 'sqm'; remove 'wan'/'lan'/'script'")
        if self.ingress_dscp == "remark" and not self.remark:
            raise ValueError("ingress_dscp remark needs a 'remark' list of {from, to}")
        if self.ingress_dscp != "remark" and self.remark:
            raise ValueError("'remark' needs ingress_dscp: remark")
        if self.control_class not in (None, "none"):
            for side, policy in (("wan", self.wan), ("lan", self.lan)):
                names = [c.name for c in policy.classes] if policy else []
                if policy and self.control_class not in names:
                    raise ValueError(
                        f"control_class {self.control_class!r} is not a class of {side} (classes: {', '.join(names)})"
                    )
        return self


# tc's options that only change its output; the others read files (-batch, -conf, -name) or reach other
# namespaces (-netns), and the objects left out run programs (exec) or never end (monitor)
SCRIPT_OPTIONS = frozenset(
    [
        "-s",
        "-stats",
        "-statistics",
        "-d",
        "-details",
        "-r",
        "-raw",
        "-p",
        "-pretty",
        "-i",
        "-iec",
        "-g",
        "-graph",
        "-j",
        "-json",
        "-t",
        "-timestamp",
        "-ts",
        "-tshort",
        "-o",
        "-oneline",
        "-N",
        "-Numeric",
    ]
)
SCRIPT_OBJECTS = ("qdisc", "class", "filter", "chain", "action", "actions")


def _check_script(script: str) -> None:
    for number, command in script_commands(script):
        try:
            argv = shlex.split(command)
        except ValueError as exc:
            raise ValueError(f"script line {number}: {exc} ({command!r})") from None
        if not argv or argv[0] != "tc":
            raise ValueError(f"script line {number}: only tc commands are allowed ({command!r})")
        words = iter(argv[1:])
        word = next(words, "")
        while word.startswith("-"):
            if word not in SCRIPT_OPTIONS:
                raise ValueError(
                    f"script line {number}: tc option {word!r} is not allowed in a script (it reads files or "
                    f"reaches outside the router); allowed: {' '.join(sorted(SCRIPT_OPTIONS))}"
                )
            word = next(words, "")
        if word not in SCRIPT_OBJECTS:
            raise ValueError(
                f"script line {number}: tc {word or '(nothing)'!s} is not allowed; a script configures "
                f"{', '.join(SCRIPT_OBJECTS)} (written in full)"
            )
        for name in _PLACEHOLDER.findall(command):
            if name not in SCRIPT_PLACEHOLDERS:
                raise ValueError(
                    f"script line {number}: unknown placeholder {{{name}}} "
                    f"(allowed: {', '.join('{' + p + '}' for p in SCRIPT_PLACEHOLDERS)})"
                )
