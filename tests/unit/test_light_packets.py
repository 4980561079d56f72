"""The light endpoint's packet writing: whole IPv4/UDP/RTP datagrams written for a batch at once, and
RTCP compound reports, parsed back with the standard library."""

from __future__ import annotations

import socket
import struct

import numpy as np

from testbed.media.light.legs import LightLeg
from testbed.media.light.packets import (
    HEADERS,
    SRTCP_TRAILER,
    SRTP_TAG,
    header_template,
    ntp_time,
    payload_matrix,
    rtcp_report,
    write_packets,
)


def test_a_batch_of_datagrams_is_written_whole():
    payloads = [b"\x01" * 80, b"\x02" * 95, b"\x03" * 3]
    rows, lengths = payload_matrix(payloads)
    assert list(lengths) == [80 + SRTP_TAG, 95 + SRTP_TAG, 3 + SRTP_TAG]
    data = np.zeros((4, 512), np.uint8)
    for row, port in ((1, 10001), (3, 10003)):
        data[row, :HEADERS] = np.frombuffer(
            header_template("10.0.1.2", "10.0.2.2", port, 20000, 46, 111, 0xABCD0000 + row), np.uint8
        )
    which = np.array([1, 3])
    frame = np.array([1, 2])
    total = write_packets(data, which, rows[frame], lengths[frame], np.array([65535, 7]), np.array([2**32 - 1, 960]))
    assert list(total) == [HEADERS + 95 + SRTP_TAG, HEADERS + 3 + SRTP_TAG]
    for k, row in enumerate(which):
        datagram = bytes(data[row, : total[k]])
        version, tos, length, _, flags, ttl, proto, _, src, dst = struct.unpack("!BBHHHBBH4s4s", datagram[:20])
        assert (version, tos >> 2, length, flags, ttl, proto) == (0x45, 46, total[k], 0x4000, 64, 17)
        assert (socket.inet_ntoa(src), socket.inet_ntoa(dst)) == ("10.0.1.2", "10.0.2.2")
        sport, dport, udp_length, checksum = struct.unpack("!HHHH", datagram[20:28])
        assert (sport, dport, udp_length, checksum) == (10000 + row, 20000, total[k] - 20, 0)
        first, pt, seq, stamp, ssrc = struct.unpack("!BBHII", datagram[28:40])
        assert (first, pt, ssrc) == (0x80, 111, 0xABCD0000 + row)
        assert (seq, stamp) == ((65535, 2**32 - 1), (7, 960))[k]
        assert datagram[40 : 40 + len(payloads[frame[k]])] == payloads[frame[k]]
    assert not data[0].any() and not data[2].any(), "rows outside the batch are left alone"


def test_rtcp_sender_report_with_a_block_and_a_cname():
    now = 1_700_000_000_123_456_789
    packet = rtcp_report(0x11223344, b"c-1@light", now, (960, 50, 4000), (0x55667788, 12, 3, 70000, 40, 0xAB, 0xCD))
    first, kind, words = struct.unpack("!BBH", packet[:4])
    assert (first, kind) == (0x81, 200)
    sr_length = 4 * (words + 1)
    ssrc, seconds, fraction, stamp, packets, octets = struct.unpack("!IIIIII", packet[4:28])
    assert (ssrc, stamp, packets, octets) == (0x11223344, 960, 50, 4000)
    assert (seconds, fraction) == ntp_time(now)
    source, lost, highest, jitter, lsr, dlsr = struct.unpack("!IIIIII", packet[28:52])
    assert (source, lost >> 24, lost & 0xFFFFFF, highest, jitter, lsr, dlsr) == (
        0x55667788,
        12,
        3,
        70000,
        40,
        0xAB,
        0xCD,
    )
    sdes = packet[sr_length:]
    first, kind, words = struct.unpack("!BBH", sdes[:4])
    assert (first, kind) == (0x81, 202)
    assert sdes[8:10] == bytes([1, 9]) and sdes[10:19] == b"c-1@light"
    assert (len(packet) - SRTCP_TRAILER) % 4 == 0 and len(sdes) == 4 * (words + 1) + SRTCP_TRAILER


def test_a_receiver_report_when_not_sending():
    packet = rtcp_report(1, b"x", 0, None, None)
    first, kind, words = struct.unpack("!BBH", packet[:4])
    assert (first, kind, words) == (0x80, 201, 1)


def test_receiver_statistics_follow_rfc_3550():
    leg = LightLeg.__new__(LightLeg)
    leg.__init__(  # type: ignore[misc]
        call="c", row=0, sock=None, port=1, ssrc=1, dscp=46, pt=111, ticks=960, clock=48000, clip=None,
        offset=0, seq0=0, ts0=0, cname=b"c",
    )  # fmt: skip
    leg.remote_ssrc = 9
    epoch = 1_796_000_000_000_000_000  # real epoch times: times the clock rate they overflow int64
    arrivals = [(65534, 0, epoch), (65535, 960, epoch + 20_000_000), (1, 2880, epoch + 60_000_000),
                (2, 3840, epoch + 85_000_000)]  # fmt: skip
    leg.note_rtp(*(list(column) for column in zip(*arrivals[:2], strict=True)))
    leg.note_rtp(*(list(column) for column in zip(*arrivals[2:], strict=True)))
    leg.received += 4
    # the recurrence packet by packet, as RFC 3550 A.8 writes it
    jitter, last = 0.0, None
    for _, stamp, at in arrivals:
        transit = at * 48000 // 1_000_000_000 - stamp  # Python's integers do not overflow
        if last is not None:
            jitter += (abs(transit - last) - jitter) / 16
        last = transit
    assert abs(leg.jitter - jitter) < 1e-6
    block = leg.report_block(epoch + 100_000_000)
    assert block is not None
    source, fraction, lost, highest, jitter, _, _ = block
    assert source == 9
    assert highest == 65536 + 2  # one wrap of the sequence number
    assert lost == 1 and fraction == (1 << 8) // 5  # 5 expected, 4 arrived
    assert jitter == int(leg.jitter) and leg.jitter > 0  # the 5 ms late last packet


def test_tap_records_split_by_stream_keep_capture_order():
    from testbed.media.tap.records import TapRecords, empty_columns
    from testbed.rescore import _by_stream

    assert _by_stream(TapRecords(**empty_columns())) == {}
    columns = empty_columns()
    ssrc = np.array([7, 9, 7, 7, 9], np.uint32)
    columns.update(
        ssrc=ssrc,
        direction=np.array([1, 0, 0, 1, 0], np.uint8),
        seq=np.arange(5, dtype=np.uint16),
        time_ns=np.arange(5, dtype=np.int64),
    )
    for name, column in columns.items():
        if len(column) == 0:
            columns[name] = np.zeros(5, column.dtype)
    streams = _by_stream(TapRecords(**columns))
    assert {key: list(value.seq) for key, value in streams.items()} == {(7, 1): [0, 3], (7, 0): [2], (9, 0): [1, 4]}


def test_capacity_counts_a_calls_wire_rate_and_the_slowest_link():
    from testbed.capacity import CALL_OVERHEAD_BYTES, call_bandwidth, slowest_link
    from testbed.media.encoded_clip import encoded_clip
    from testbed.scenario.model import Scenario

    assert call_bandwidth("pcmu") == (160 + CALL_OVERHEAD_BYTES) * 8 * 50  # 95.2 kbit/s, G.711 as on the wire
    payloads = encoded_clip("opus", "client")
    opus = call_bandwidth("opus")
    assert opus == (sum(map(len, payloads)) / len(payloads) + CALL_OVERHEAD_BYTES) * 8 * 50
    assert 40_000 < opus < 70_000
    scenario = Scenario.model_validate(
        {"name": "s", "links": {"wan": {"router": {"rate": "50mbit"}, "gateway": {"rate": "100mbit"}}}}
    )
    assert slowest_link(scenario) == 50_000_000
    assert slowest_link(Scenario.model_validate({"name": "s"})) is None
