"""Router QoS templates (``scenarios/routers/*.yaml``): egress classes per router side, DSCP handling.

A template says what the router does to traffic leaving it: on the WAN side (upstream) and the LAN side
(downstream). ``kind: tc-script`` instead carries the user's own tc commands, so a team can test the
exact script it deploys.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from testbed import units
from testbed.scenario.types import Dscp, Name, Size, Strict

_PORTS = re.compile(r"^(\d{1,5})(?:-(\d{1,5}))?$")


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


def resolve_share(text: str, link_rate: int) -> int:
    """``30%`` of a 10 Mbit link -> 3_000_000 bit/s; an absolute rate is returned as it is."""
    if text.endswith("%"):
        return int(link_rate * units.parse_percent(text) / 100)
    return units.parse_rate(text)


class ClassMatch(Strict):
    """Packets that belong to a class: any listed DSCP, and the protocol and ports when given."""

    dscp: list[Dscp] = Field(default_factory=list)
    protocol: Literal["udp", "tcp", "icmp"] | None = None
    ports: list[str] = Field(default_factory=list, description="source or destination port, e.g. 443, 10000-60000")

    @field_validator("ports", mode="before")
    @classmethod
    def _ports(cls, value: Any) -> Any:
        items = value if isinstance(value, list) else [value]
        result = []
        for item in items:
            match = _PORTS.match(str(item).strip())
            low, high = (int(match[1]), int(match[2] or match[1])) if match else (-1, -1)
            if not match or not 1 <= low <= high <= 65535:
                raise ValueError(f"{item!r} is not a port or port range; use e.g. 443 or 10000-60000 (1-65535)")
            result.append(f"{low}-{high}" if low != high else str(low))
        return result

    @model_validator(mode="after")
    def _ports_need_protocol(self) -> ClassMatch:
        if self.ports and self.protocol not in ("udp", "tcp"):
            raise ValueError("a port match needs protocol: udp or tcp")
        if not self.dscp and self.protocol is None:
            raise ValueError("a match needs dscp, protocol or ports")
        return self


class TrafficClass(Strict):
    """One HTB class: guaranteed ``rate``, borrowing up to ``ceil``; lower ``priority`` is served first."""

    name: Name
    match: list[ClassMatch] = Field(default_factory=list, description="any of these matches")
    priority: int = Field(default=4, ge=0, le=7)
    rate: str = "10%"
    ceil: str = "100%"
    queue_limit: int | None = Field(default=None, ge=1, le=100_000, description="packets")
    default: bool = False

    @field_validator("rate", "ceil", mode="before")
    @classmethod
    def _share(cls, value: object) -> str:
        return parse_share(value)


class EgressPolicy(Strict):
    """The classes of one router interface; exactly one is the default."""

    classes: list[TrafficClass] = Field(min_length=1)
    queue_limit: int | None = Field(default=None, ge=1, le=100_000,
                                    description="packets, for classes that set none")

    @model_validator(mode="after")
    def _one_default(self) -> EgressPolicy:
        defaults = [c.name for c in self.classes if c.default]
        if len(defaults) != 1:
            raise ValueError(f"exactly one class must be 'default: true' (found {len(defaults)})")
        names = [c.name for c in self.classes]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate class name {duplicates[0]!r}")
        return self


class DscpRemark(Strict):
    from_: Dscp = Field(alias="from")
    to: Dscp


class RouterTemplate(Strict):
    """A whole router template file."""

    description: str = ""
    kind: Literal["classes", "tc-script"] = "classes"
    ingress_dscp: Literal["trust", "bleach", "remark"] = Field(
        default="trust", description="what the router does to DSCP of packets it receives")
    remark: list[DscpRemark] = Field(default_factory=list)
    wan: EgressPolicy | None = Field(default=None, description="egress towards the WAN (upstream)")
    lan: EgressPolicy | None = Field(default=None, description="egress towards the LAN (downstream)")
    script: str | None = Field(default=None, description="tc-script: commands with {wan} / {lan}")
    burst: Size | None = Field(default=None, description="HTB burst; default sized for the rate")

    @model_validator(mode="after")
    def _kind_fields(self) -> RouterTemplate:
        if self.kind == "tc-script" and not self.script:
            raise ValueError("kind tc-script needs 'script'")
        if self.kind == "classes" and self.script:
            raise ValueError("'script' belongs to kind tc-script")
        if self.ingress_dscp == "remark" and not self.remark:
            raise ValueError("ingress_dscp remark needs a 'remark' list of {from, to}")
        return self
