"""The calls' ICE paths in the HTML report: candidate pair, relay protocol, "TURN required", setup
steps and the relay's TCP retransmissions (the console has its own table in ``console.py``)."""

from __future__ import annotations

from html import escape

from testbed.results import RunResult


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _escape(text: str) -> str:
    return escape(text, quote=True)


def path_section(result: RunResult) -> str:
    """The ICE path of calls offered TURN or relayed ('' when none)."""
    rows = []
    for variant in result.variants:
        for call in variant.calls:
            path = call.path
            if path is None:
                continue
            tcp = path.relay_tcp
            cells = [
                variant.name,
                call.id,
                path.label(),
                "-" if path.turn_required is None else ("yes" if path.turn_required else "no"),
                *(_fmt(path.timings.get(key)) for key in ("gather_s", "ice_s", "dtls_s")),
                _fmt(call.setup_s),
                f"{tcp['retransmitted']} of {tcp['segs_out']}" if tcp else "-",
            ]
            rows.append("<tr>" + "".join(f"<td>{_escape(str(cell))}</td>" for cell in cells) + "</tr>")
    if not rows:
        return ""
    head = "".join(
        f"<th>{h}</th>"
        for h in ("variant", "call", "pair", "TURN required", "gather s", "ICE s", "DTLS s", "setup s", "TCP retrans")
    )
    return (
        "<h2>Call paths</h2><p class='note'>The caller's ICE pair (local-remote candidate types/transport; "
        "relay(udp|tcp|tls): through the TURN server, over that transport); TURN required: it relayed although "
        "a direct path was allowed; gather: candidates gathered, TURN allocations included; TCP retrans: the "
        "caller's segments to its TURN server retransmitted (a TCP/TLS relay's loss shows as delay).</p>"
        f"<table><tr>{head}</tr>{''.join(rows)}</table>"
    )
