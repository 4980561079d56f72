"""The places where the testbed reaches into aiortc 1.16's (and aioice's) internals (pinned in pyproject.toml),
kept together so an aiortc upgrade is checked here and nowhere else (docs/design.md, "The aiortc hooks").

- What the listener would receive is recorded before aiortc's jitter buffer: aiortc's receiver stalls
  on a lost packet, drops the frames before the hole, has no concealment and never releases its last
  packets, so its playback is never what gets scored. ``RTCRtpReceiver._handle_rtp_packet`` is wrapped
  to keep every decrypted RTP packet with its arrival time for the playout model.
- Each RTP packet's application send time: ``RTCDtlsTransport._send_rtp`` is wrapped.
- aiortc never sets IP_TOS: the ICE sockets (``connection._protocols``) are marked directly.
- The candidate pair the media took: aioice's nominated pair (``connection._nominated``), read once the
  call is connected (aioice clears it on close); for a relayed pair, how the TURN server was reached
  (aioice's ``turn_transport`` and ``turn_ssl``).
- A TURN relay's own socket (UDP, TCP or TLS to the server) sits inside aioice's ``TurnTransport``
  (``_TurnTransport__inner_protocol``): it is marked like the others, and a TCP one's ``TCP_INFO``
  (retransmissions, RTT) is read at hang-up.

aiortc 1.16 exposes ``iceTransportPolicy`` in ``RTCConfiguration`` itself, so the relay-only policy
needs no hook.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Awaitable, Callable
from typing import Any

from aiortc import RTCPeerConnection, RTCRtpReceiver

from testbed.media.records import PacketRecord, SentRecord

RTP_HEADER = struct.Struct("!BBHII")


def record_received_packets(receiver: RTCRtpReceiver, record: PacketRecord, decode: bool = False) -> None:
    """Keep every decrypted RTP packet the receiver handles.

    Without ``decode`` the packets stop here: aiortc's jitter buffer and decoder are never what gets
    scored, and skipping them halves a call's CPU. ICE consent (which detects dropped calls) and
    sending are unaffected; only aiortc's receiver statistics stay empty.
    """
    original = receiver._handle_rtp_packet

    async def handle(packet: Any, arrival_time_ms: int) -> None:
        record.add(packet)
        if decode:
            await original(packet, arrival_time_ms=arrival_time_ms)

    receiver._handle_rtp_packet = handle  # type: ignore[method-assign]


def record_sent_packets(pc: RTCPeerConnection, record: SentRecord) -> None:
    """Note every outgoing RTP packet (RTCP excluded) as it is handed to SRTP and the socket."""
    for transceiver in pc.getTransceivers():
        dtls: Any = transceiver.sender.transport
        if dtls is None or getattr(dtls, "_testbed_recorded", False):
            continue
        original: Callable[[bytes], Awaitable[None]] = dtls._send_rtp

        async def send(data: bytes, original: Callable[[bytes], Awaitable[None]] = original) -> None:
            if len(data) >= 12 and not 64 <= (data[1] & 0x7F) <= 95:  # RTCP types 192-223 (RFC 5761)
                _, _, seq, timestamp, ssrc = RTP_HEADER.unpack_from(data)
                record.add(seq, timestamp, ssrc)
            await original(data)

        dtls._send_rtp = send
        dtls._testbed_recorded = True


def _connection(pc: RTCPeerConnection) -> Any:
    for transceiver in pc.getTransceivers():
        dtls = transceiver.sender.transport
        connection = getattr(dtls.transport, "_connection", None) if dtls else None
        if connection is not None:
            return connection
    return None


def _media_sockets(pc: RTCPeerConnection) -> list[socket.socket]:
    """The ICE sockets: host candidates' UDP sockets and each TURN relay's socket to its server."""
    sockets = []
    for protocol in getattr(_connection(pc), "_protocols", []):
        transport = protocol.transport
        inner = getattr(transport, "_TurnTransport__inner_protocol", None)
        if inner is not None:  # a relay: its own socket (UDP, or TCP with or without TLS) to the server
            transport = getattr(inner, "transport", None)
        sock = transport.get_extra_info("socket") if transport is not None else None
        if sock is not None and sock.family == socket.AF_INET:
            sockets.append(sock)
    return sockets


def mark_media_sockets(pc: RTCPeerConnection, dscp: int) -> int:
    """Set the DSCP on the ICE sockets (a TURN relay's socket to its server too). Returns how many."""
    marked = 0
    for sock in _media_sockets(pc):
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, dscp << 2)
        marked += 1
    return marked


TCP_INFO_TOTAL_RETRANS = 100  # byte offsets in struct tcp_info (linux/tcp.h)
TCP_INFO_RTT = 68
TCP_INFO_SEGS_OUT = 136


def relay_tcp_info(pc: RTCPeerConnection) -> dict[str, int]:
    """The TCP connection to the TURN server (a TCP or TLS relay): segments sent, retransmitted, and
    smoothed RTT, from the kernel's TCP_INFO; {} when the relay is UDP or there is none."""
    for sock in _media_sockets(pc):
        if sock.type == socket.SOCK_STREAM:
            info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 232)
            return {
                "segs_out": struct.unpack_from("I", info, TCP_INFO_SEGS_OUT)[0],
                "retransmitted": struct.unpack_from("I", info, TCP_INFO_TOTAL_RETRANS)[0],
                "rtt_us": struct.unpack_from("I", info, TCP_INFO_RTT)[0],
            }
    return {}


def selected_pair(pc: RTCPeerConnection) -> dict[str, str | None]:
    """The nominated ICE candidate pair: its types (host, srflx, prflx, relay) and transport; {} before
    ICE has nominated one."""
    connection = _connection(pc)
    pair = getattr(connection, "_nominated", {}).get(1)
    if pair is None:
        return {}
    relay = None
    if pair.local_candidate.type == "relay":
        relay = "tls" if connection.turn_ssl else connection.turn_transport
    return {
        "local_type": pair.local_candidate.type,
        "remote_type": pair.remote_candidate.type,
        "protocol": pair.local_candidate.transport.lower(),
        "relay_protocol": relay,
    }
