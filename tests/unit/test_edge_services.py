"""The vendor's cloud in pure parts: the edge section and a call's ice in the scenario (errors located,
exit 2), coturn's command line, a caller's ICE configuration, the run's CA, the signalling mailbox."""

from __future__ import annotations

import asyncio
import ipaddress

import pytest
from cryptography import x509

from testbed.errors import ScenarioError
from testbed.lab.pki import LabCA
from testbed.lab.turn import TurnEndpoint, command, peer_ranges
from testbed.media.signalling import Mailbox
from testbed.scenario import load_scenario
from testbed.scenario.edge import TurnSpec
from testbed.workload.call_plan import ice_config
from tests.helpers.cli import run_cli

EDGE = """name: edge
topology:
  nodes: {client: {}, router: {kind: router}, gateway: {}, turn: {}}
  links:
    lan: {endpoints: [client, router]}
    wan: {endpoints: [router, gateway, turn], subnet: 203.0.113.0/24}
edge:
  media_prefix: 203.0.113.0/24
  turn: {node: turn}
calls:
  - {name: rep, ice: {turn: tls, policy: relay}}
"""


def load(tmp_path, text):
    path = tmp_path / "s.yaml"
    path.write_text(text)
    return load_scenario(path)


def error_of(tmp_path, text) -> str:
    with pytest.raises(ScenarioError) as caught:
        load(tmp_path, text)
    return str(caught.value)


def test_a_valid_edge(tmp_path):
    scenario = load(tmp_path, EDGE).scenario
    assert scenario.edge.turn is not None and scenario.edge.turn.relay_range == (49152, 49999)
    assert scenario.calls[0].ice.turn == ["tls"] and scenario.calls[0].ice.policy == "relay"


@pytest.mark.parametrize(
    "change, message",
    [
        (("turn: {node: turn}", "turn: {node: router}"), "'router' is a router; it must be a host"),
        (("turn: {node: turn}", "turn: {node: tern}"), "did you mean 'turn'"),
        (("media_prefix: 203.0.113.0/24", "media_prefix: 192.0.2.0/24"), "has no address in the media prefix"),
        (("turn: {node: turn}", "turn: {node: turn, relay_ports: 5000-6000}"), "inside 10000-60000"),
        (("ice: {turn: tls, policy: relay}", "ice: {policy: relay}"), "policy relay needs a TURN transport"),
        (("ice: {turn: tls, policy: relay}", "ice: {turn: [udp, tls]}"), "aiortc, which uses one TURN server"),
        (("  turn: {node: turn}\n", "  signalling: {node: turn}\n  turn: {node: turn}\n"), "collides with the TURN"),
    ],
)
def test_edge_errors_are_located(tmp_path, change, message):
    text = EDGE.replace(*change)
    assert text != EDGE
    assert message in error_of(tmp_path, text)


def test_ice_without_a_turn_server(tmp_path):
    text = EDGE.replace("  turn: {node: turn}\n", "")
    assert "calls[0].ice" in error_of(tmp_path, text) or "calls.0.ice" in error_of(tmp_path, text)


def test_a_browser_caller_takes_every_transport(tmp_path):
    text = EDGE.replace("ice: {turn: tls, policy: relay}", "endpoint: {from: chromium}, ice: {turn: [udp, tcp, tls]}")
    assert load(tmp_path, text).scenario.calls[0].ice.turn == ["udp", "tcp", "tls"]


def test_bad_edge_input_exits_2(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(EDGE.replace("turn: {node: turn}", "turn: {node: turn, tls_port: 0}"))
    result = run_cli("validate", str(path))
    assert result.returncode == 2 and "tls_port" in result.stderr + result.stdout


ENDPOINT = TurnEndpoint("turn", "203.0.113.11", "testbed", "secret", "/x/ca.pem", 443, "spki")


def test_coturn_command_line(tmp_path):
    argv = command(
        TurnSpec(node="turn", relay_ports="40000-40099"),
        ENDPOINT,
        tmp_path / "c.pem",
        tmp_path / "c.key",
        tmp_path,
        peer_ranges([ipaddress.IPv4Network("198.18.0.0/24")]),
        tmp_path / "log",
    )
    assert argv[0] == "turnserver" and "-n" in argv and "--no-cli" in argv and "--lt-cred-mech" in argv
    for expected in (
        "--listening-ip=203.0.113.11",
        "--listening-port=3478",
        "--tls-listening-port=443",
        "--min-port=40000",
        "--max-port=40099",
        "--user=testbed:secret",
        "--allowed-peer-ip=198.18.0.0-198.18.0.255",
        f"--pidfile={tmp_path / 'turnserver.pid'}",
    ):
        assert expected in argv, expected


def test_a_callers_ice_configuration():
    config = ice_config({"turn": ["udp", "tls"], "stun": True, "policy": "relay"}, ENDPOINT)
    assert config is not None
    assert config["servers"][0]["urls"] == [
        "turn:203.0.113.11:3478?transport=udp",
        "turns:203.0.113.11:443?transport=tcp",
    ]
    assert config["servers"][0]["username"] == "testbed" and config["servers"][1]["urls"] == ["stun:203.0.113.11:3478"]
    assert config["policy"] == "relay" and config["ca_file"] == "/x/ca.pem" and config["address"] == "203.0.113.11"
    assert ice_config({}, ENDPOINT) is None


def test_the_runs_ca_signs_a_certificate_naming_the_address(tmp_path):
    ca = LabCA(tmp_path, "abc123")
    server = ca.server("turn", ipaddress.IPv4Address("203.0.113.11"))
    certificate = x509.load_pem_x509_certificate(server.cert.read_bytes())
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.IPAddress) == [ipaddress.IPv4Address("203.0.113.11")]
    assert certificate.issuer == x509.load_pem_x509_certificate(ca.ca_file.read_bytes()).subject
    certificate.verify_directly_issued_by(ca.certificate)
    assert len(server.spki_sha256) == 44  # base64 of 32 bytes


def test_the_mailbox_hands_a_put_to_a_waiting_get():
    async def exchange():
        box = Mailbox()
        waiting = asyncio.ensure_future(box.get("rep/offer", 1.0))
        await asyncio.sleep(0)
        box.put("rep/offer", {"sdp": "v=0"})
        got = await waiting
        with pytest.raises(TimeoutError):
            await box.get("rep/answer", 0.01)
        return got

    assert asyncio.run(exchange()) == {"sdp": "v=0"}
