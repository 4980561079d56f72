"""The typed scenario: what a user writes in ``scenarios/*.yaml``, validated field by field.

Cross-references (a link naming an unknown node, a call between nodes that do not exist) are checked
afterwards by ``references.py``, so each model here only knows its own fields.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Literal

from pydantic import Field, PositiveInt, field_validator, model_validator

from testbed.codecs import CodecName
from testbed.scenario.edge import EdgeSpec, IceSpec
from testbed.scenario.endpoints import CallEndpoints
from testbed.scenario.media import OpusSpec, SpeechSpec
from testbed.scenario.sweep import SweepSpec
from testbed.scenario.thresholds import Thresholds
from testbed.scenario.types import Dscp, Duration, Label, Name, Percent, Rate, Size, Strict, TemplateName

MAX_CALLS = 1000  # concurrent calls in one `count: N` group (the light endpoint carries 500+ on one machine)

SCHEMA_VERSION = 1

# ---------------------------------------------------------------- topology


class NodeSpec(Strict):
    """One node of the lab. ``host`` nodes end traffic; ``router`` nodes forward it."""

    kind: Literal["host", "router"] = "host"
    description: str = ""


class LinkSpec(Strict):
    """An L2 segment. Two endpoints make a veth pair; more make a bridge (a switch node) they all join."""

    endpoints: list[Name] = Field(min_length=2, max_length=32)
    subnet: ipaddress.IPv4Network | None = Field(
        default=None, description="overrides the automatic address plan, e.g. 192.168.1.0/24"
    )
    addresses: dict[Name, ipaddress.IPv4Address] = Field(
        default_factory=dict, description="per endpoint address overrides inside the subnet"
    )
    mtu: int = Field(default=1500, ge=576, le=9000)


def _default_nodes() -> dict[str, NodeSpec]:
    return {"client": NodeSpec(), "router": NodeSpec(kind="router"), "gateway": NodeSpec()}


def _default_links() -> dict[str, LinkSpec]:
    return {"lan": LinkSpec(endpoints=["client", "router"]), "wan": LinkSpec(endpoints=["router", "gateway"])}


class TunnelSpec(Strict):
    """A VPN tunnel: a real kernel tunnel (GRE or VXLAN) between two nodes, over the lab's own links.

    The first endpoint (e.g. the client) sends traffic for the ``routes`` nodes into the tunnel; the second
    (the VPN concentrator) unwraps it and forwards it to them. Routers on the way see only the tunnel's
    outer packets, whose DSCP is 0 unless ``copy_dscp`` copies the inner packet's TOS to the outer header.
    """

    kind: Literal["gre", "vxlan"] = Field(
        default="gre", description="gre: IP protocol 47, 24 bytes of overhead; vxlan: UDP port 4789, 50 bytes"
    )
    endpoints: list[Name] = Field(
        min_length=2, max_length=2, description="[first endpoint, concentrator]: two host or router nodes"
    )
    copy_dscp: bool = Field(
        default=False,
        description="copy the inner packet's TOS (DSCP) to the outer header "
        "(Linux 'tos inherit'); false: the outer DSCP is 0, so routers cannot see it",
    )
    subnet: ipaddress.IPv4Network | None = Field(
        default=None,
        description="the tunnel's inner addresses (.1 first endpoint, .2 concentrator); default: the "
        "next free subnet of the address pool after the links' subnets",
    )
    routes: list[Name] = Field(
        default_factory=list,
        description="nodes the first endpoint reaches through the "
        "tunnel (their addresses); they route the tunnel's subnet back via the concentrator",
    )
    mtu: int | None = Field(
        default=None, ge=576, le=9000, description="default: the endpoints' link MTU minus the tunnel's overhead"
    )

    @model_validator(mode="after")
    def _consistent(self) -> TunnelSpec:
        if self.endpoints[0] == self.endpoints[1]:
            raise ValueError(f"a tunnel joins two different nodes (got {self.endpoints[0]!r} twice)")
        if self.subnet is not None and self.subnet.prefixlen > 30:
            raise ValueError(f"tunnel subnet {self.subnet} has no room for two addresses; use /30 or larger")
        if len(set(self.routes)) != len(self.routes):
            raise ValueError("routes lists a node twice")
        return self


class Topology(Strict):
    """Nodes and the segments between them. Omitted: client --lan-- router --wan-- gateway."""

    nodes: dict[Name, NodeSpec] = Field(default_factory=_default_nodes)
    links: dict[Name, LinkSpec] = Field(default_factory=_default_links)
    address_pool: ipaddress.IPv4Network = Field(
        default=ipaddress.IPv4Network("198.18.0.0/16"),
        description="automatic subnets are carved from here (RFC 2544 benchmarking range by default)",
    )
    subnet_prefix: int = Field(default=24, ge=16, le=30)
    tunnels: dict[Name, TunnelSpec] = Field(
        default_factory=dict, description="VPN tunnels over the links; the name becomes the interface name"
    )

    @model_validator(mode="after")
    def _nodes_present(self) -> Topology:
        if not self.nodes:
            raise ValueError("a topology needs at least two nodes")
        return self


# ---------------------------------------------------------------- link impairments

JitterDistribution = Literal["uniform", "normal", "pareto", "paretonormal"]


class LossSpec(Strict):
    """Packet loss: ``2%`` (random), or a model with its parameters (netem's names in the docs)."""

    model: Literal["random", "gilbert_elliott", "four_state"] = "random"
    rate: Percent | None = Field(default=None, description="random: loss probability")
    correlation: Percent = Field(default=0, description="random: correlation with the previous packet")
    p: Percent | None = Field(default=None, description="gilbert_elliott: good -> bad transition")
    r: Percent | None = Field(default=None, description="gilbert_elliott: bad -> good transition")
    loss_bad: Percent = Field(default=100, description="gilbert_elliott: loss in the bad state (1-h)")
    loss_good: Percent = Field(default=0, description="gilbert_elliott: loss in the good state (1-k)")
    p13: Percent | None = Field(default=None, description="four_state: good reception -> burst loss")
    p31: Percent | None = Field(default=None, description="four_state: burst loss -> good reception")
    p32: Percent = Field(default=0, description="four_state: burst loss -> burst reception")
    p23: Percent = Field(default=100, description="four_state: burst reception -> burst loss")
    p14: Percent = Field(default=0, description="four_state: good reception -> isolated loss")

    @model_validator(mode="before")
    @classmethod
    def _from_percentage(cls, data: Any) -> Any:
        if isinstance(data, (str, int, float)) and not isinstance(data, bool):
            return {"model": "random", "rate": data}
        return data

    @model_validator(mode="after")
    def _parameters_match_model(self) -> LossSpec:
        needed = {"random": ("rate",), "gilbert_elliott": ("p", "r"), "four_state": ("p13", "p31")}[self.model]
        missing = [name for name in needed if getattr(self, name) is None]
        if missing:
            raise ValueError(f"loss model {self.model!r} needs {', '.join(missing)}")
        return self


class Impairment(Strict):
    """What one direction of a link does to packets (the egress of one endpoint)."""

    rate: Rate | None = None
    burst: Size | None = Field(default=None, description="shaper bucket; default sized for the rate")
    delay: Duration = 0
    jitter: Duration = 0
    jitter_distribution: JitterDistribution = "normal"
    delay_correlation: Percent = 0
    loss: LossSpec | None = None
    reorder: Percent = 0
    reorder_correlation: Percent = 0
    duplicate: Percent = 0
    corrupt: Percent = 0
    queue_limit: PositiveInt | None = Field(default=None, le=100_000, description="packets")
    flow_order: Literal["kept", "jitter"] = Field(
        default="kept",
        description="userspace engine: 'kept' holds each flow's packets in order under jitter; "
        "'jitter' reorders them as netem does (netem always does)",
    )
    trace: str | None = Field(
        default=None,
        description="userspace engine: CSV time series time_s,delay_ms"
        "[,jitter_ms][,loss_pct] replayed from the start of the lab (path relative to the "
        "scenario file)",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Impairment:
        if self.delay > 60:
            raise ValueError(f"delay {self.delay:g}s is more than the 60s allowed")
        if self.jitter > 0 and self.jitter > self.delay and self.jitter_distribution != "pareto":
            # netem clips negative delays to 0, which silently distorts the distribution
            raise ValueError("jitter is larger than delay; negative delays would be clipped")
        if self.reorder > 0 and self.delay == 0:
            raise ValueError("reorder needs a delay (packets are reordered by sending some without it)")
        return self

    def needs_netem(self) -> bool:
        """True when anything beyond plain rate shaping and queue length is asked for (netem's part,
        which kernel netem or the userspace engine provides)."""
        return bool(
            self.delay or self.jitter or self.loss or self.reorder or self.duplicate or self.corrupt or self.trace
        )

    def shaping_only(self) -> Impairment:
        """This direction without netem's part: what the kernel shaper does when the engine does the rest."""
        return self.model_copy(
            update={"delay": 0, "jitter": 0, "loss": None, "reorder": 0, "duplicate": 0, "corrupt": 0, "trace": None}
        )


# links: {link name: {sending endpoint: Impairment}}
LinkImpairments = dict[Name, dict[Name, Impairment]]

# ---------------------------------------------------------------- router


class RouterSpec(Strict):
    """Which router node runs which QoS template, and which of its links face the WAN and the LAN."""

    node: Name | None = Field(default=None, description="default: the only node of kind router")
    template: TemplateName = Field(default="fifo", description="a file in scenarios/routers/ (without .yaml)")
    wan: Name | None = Field(default=None, description="upstream link; default: the link named 'wan'")
    lan: Name | None = Field(default=None, description="downstream link; default: the link named 'lan'")
    overrides: dict[str, Any] = Field(default_factory=dict, description="fields replaced in the template")


# ---------------------------------------------------------------- workload

Codec = CodecName  # the names of testbed.codecs.CODECS


class CallSpec(Strict):
    """One or more identical bidirectional calls between a client node and a gateway node."""

    name: Label | None = None
    from_: Name = Field(default="client", alias="from")
    to: Name = "gateway"
    codec: Codec = "opus"
    dscp: Dscp = 46
    start: Duration = 0
    duration: Duration = Field(
        default=10,
        description="from placing the call to hanging up: call setup (ICE, DTLS, signalling) comes out of it, "
        "so the talk time is shorter; see talk",
    )
    talk: Duration | None = Field(
        default=None,
        description="talk time instead of duration: media flows this long after the call connects, then it "
        "hangs up (however long setup took)",
    )
    setup_timeout: Duration = 10
    count: int = Field(default=1, ge=1, le=MAX_CALLS, description="identical calls placed at once (NAME-1 .. NAME-N)")
    endpoint: CallEndpoints = Field(
        default_factory=CallEndpoints,
        description="call endpoint per side: aiortc (WebRTC in the node's agent) or chromium (the browser), "
        "as a name or {kind, dscp | network_priority}",
    )
    opus: OpusSpec = Field(default_factory=OpusSpec, description="aiortc's Opus: bitrate, in-band FEC, expected loss")
    speech: SpeechSpec = Field(default_factory=SpeechSpec, description="your own WAV references per side")
    ice: IceSpec = Field(
        default_factory=IceSpec,
        description="the caller's ICE: TURN transports of the edge's TURN server it may use, STUN, policy all | relay",
    )

    @model_validator(mode="after")
    def _duration_or_talk(self) -> CallSpec:
        if self.talk is not None and "duration" in self.model_fields_set:
            raise ValueError("give duration (placing to hanging up) or talk (connected to hanging up), not both")
        if self.talk is not None and self.talk <= 0:
            raise ValueError("talk must be more than 0s")
        return self

    @model_validator(mode="after")
    def _ice_fits_caller(self) -> CallSpec:
        self.ice.check_caller(self.endpoint.from_.kind)
        return self

    @model_validator(mode="after")
    def _dscp_not_for_browsers(self) -> CallSpec:
        browsers = [
            side for side, e in (("from", self.endpoint.from_), ("to", self.endpoint.to)) if e.kind == "chromium"
        ]
        if "dscp" in self.model_fields_set and browsers:
            raise ValueError(
                f"dscp is set for the call, but its {' and '.join(browsers)} side is chromium, which marks what "
                "its audio sender's networkPriority asks for: give the browser's side as {kind: chromium, "
                "network_priority: high} (or unset, medium, low, very-low) and an aiortc side's DSCP as "
                "{kind: aiortc, dscp: EF} under endpoint"
            )
        return self

    @field_validator("duration")
    @classmethod
    def _positive(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("a call lasts more than 0s")
        return value


class TrafficSpec(Strict):
    """Cross traffic between two nodes: bulk TCP, constant-rate UDP, or on/off UDP bursts."""

    name: Label
    kind: Literal["tcp_bulk", "udp_cbr", "udp_onoff"]
    from_: Name = Field(alias="from")
    to: Name
    flows: int = Field(default=1, ge=1, le=64)
    rate: Rate | None = Field(default=None, description="udp kinds: sending rate")
    packet_size: Size = Field(default=1200, description="udp kinds: datagram payload")
    dscp: Dscp = 0
    start: Duration = 0
    stop: Duration | None = None
    on: Duration | None = Field(default=None, description="udp_onoff: burst length")
    off: Duration | None = Field(default=None, description="udp_onoff: pause length")

    @model_validator(mode="after")
    def _kind_parameters(self) -> TrafficSpec:
        if self.kind != "tcp_bulk" and self.rate is None:
            raise ValueError(f"{self.kind} traffic needs a rate, e.g. rate: 5mbit")
        if self.kind == "udp_onoff" and (self.on is None or self.off is None):
            raise ValueError("udp_onoff traffic needs 'on' and 'off' durations")
        if not 28 <= self.packet_size <= 65_507:
            raise ValueError(f"packet_size {self.packet_size} is outside 28..65507 bytes")
        if self.stop is not None and self.stop <= self.start:
            raise ValueError("stop must come after start")
        return self


class TimelineEvent(Strict):
    """Something that happens at ``at`` seconds into a variant's run."""

    at: Duration
    action: Literal["start_traffic", "stop_traffic", "set_link", "set_router_template", "flush_conntrack"]
    traffic: Label | None = None
    link: Name | None = None
    impairments: dict[Name, Impairment] | None = Field(
        default=None, description="set_link: new impairment per sending endpoint"
    )
    template: TemplateName | None = None
    node: Name | None = Field(
        default=None,
        description="flush_conntrack: whose connection tracking (and NAT mappings) to forget; default the router",
    )

    @model_validator(mode="after")
    def _action_parameters(self) -> TimelineEvent:
        required: tuple[str, ...] = {
            "start_traffic": ("traffic",),
            "stop_traffic": ("traffic",),
            "set_link": ("link", "impairments"),
            "set_router_template": ("template",),
            "flush_conntrack": (),
        }[self.action]
        missing = [name for name in required if getattr(self, name) is None]
        if missing:
            raise ValueError(f"action {self.action!r} needs {', '.join(missing)}")
        return self


class VariantSpec(Strict):
    """A variant of the scenario, e.g. the same network with another router template."""

    description: str = ""
    router: RouterSpec | None = None
    # partial impairments: validated after they are merged into the scenario's own links
    links: dict[Name, dict[Name, dict[str, Any]]] | None = None
    # partial tunnel settings (e.g. copy_dscp, routes), merged into topology.tunnels the same way
    tunnels: dict[Name, dict[str, Any]] | None = Field(
        default=None, description="per tunnel of topology.tunnels: the fields this variant changes, e.g. copy_dscp"
    )


# ---------------------------------------------------------------- the whole file


class Scenario(Strict):
    """A whole scenario file."""

    name: Label
    description: str = ""
    backend: Literal["netns", "docker"] = "netns"
    impairment_engine: Literal["auto", "netem", "userspace"] = Field(
        default="auto",
        description="who delays and drops packets: kernel netem, the userspace NFQUEUE engine, or "
        "auto (netem where the kernel has it)",
    )
    topology: Topology = Field(default_factory=Topology)
    edge: EdgeSpec = Field(
        default_factory=EdgeSpec, description="the vendor's cloud: media prefix, TURN server, signalling service"
    )
    links: LinkImpairments = Field(default_factory=dict)
    router: RouterSpec = Field(default_factory=RouterSpec)
    calls: list[CallSpec] = Field(default_factory=list)
    traffic: list[TrafficSpec] = Field(default_factory=list)
    timeline: list[TimelineEvent] = Field(default_factory=list)
    variants: dict[Label, VariantSpec] = Field(default_factory=dict)
    thresholds: Thresholds = Field(default_factory=list)
    sweep: SweepSpec | None = Field(default=None, description="`testbed sweep run`: parameters, values, repeat")
