"""The router's edge towards the WAN: address translation (and, to come, the firewall), as iptables
chains of the router's own, refilled whenever a template is applied (a template without NAT empties
them; flows already translated keep their conntrack entries, as on a real router).

RFC 4787 behaviours of the two NAT kinds (Linux conntrack):

- ``masquerade``: endpoint-independent mapping (the source port is kept where free, and one inside
  address and port keep their outside port for every destination), address-and-port-dependent
  filtering (only replies to what went out come in). What most small-office routers do.
- ``symmetric``: address-and-port-dependent mapping (``--random-fully``: a random outside port per
  flow), the same filtering. What some enterprise firewalls and carrier-grade NAT do.

Under NAT nothing from the WAN reaches the LAN unless it belongs to a flow the LAN opened: the LAN's
private addresses are not routed on the internet, which the lab's routing otherwise would allow.
"""

from __future__ import annotations

from testbed.lab import iptables
from testbed.lab.backends import Node
from testbed.lab.tools import run_tool
from testbed.scenario.router_template import RouterTemplate

NAT_CHAIN = "vtb-nat"
INBOUND_CHAIN = "vtb-inbound"
JUMPS = (("nat", "POSTROUTING", NAT_CHAIN), ("filter", "FORWARD", INBOUND_CHAIN))


def edge_rules(template: RouterTemplate, sides: dict[str, str]) -> str:
    """An iptables-restore input that (re)fills the router's edge chains (pure; unit-tested)."""
    wan, lan = sides.get("wan"), sides.get("lan")
    nat = ["*nat", f":{NAT_CHAIN} - [0:0]"]
    inbound = ["*filter", f":{INBOUND_CHAIN} - [0:0]"]
    if template.nat != "none" and wan:
        random = " --random-fully" if template.nat == "symmetric" else ""
        nat.append(f"-A {NAT_CHAIN} -o {wan} -j MASQUERADE{random}")
        into = f" -o {lan}" if lan else ""
        inbound += [
            f"-A {INBOUND_CHAIN} -i {wan}{into} -m conntrack --ctstate ESTABLISHED,RELATED -j RETURN",
            f"-A {INBOUND_CHAIN} -i {wan}{into} -j DROP",
        ]
    return "\n".join([*nat, "COMMIT", *inbound, "COMMIT", ""])


def install_edge(node: Node, template: RouterTemplate, sides: dict[str, str]) -> None:
    """Fill the edge chains for ``template`` and make sure the built-in chains jump to them once."""
    run_tool(node, [iptables.IPTABLES_RESTORE, "--noflush"], edge_rules(template, sides))
    for table, chain, target in JUMPS:
        rules = run_tool(node, [iptables.IPTABLES_SAVE, "-t", table])
        if f"-A {chain} -j {target}" not in rules:
            run_tool(node, [iptables.IPTABLES, "-t", table, "-A", chain, "-j", target])
