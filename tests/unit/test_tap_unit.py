"""The packet tap's pure parts: its BPF filter (judged by the kernel on a unix socket pair, no root),
header parsing, extended sequence numbers, one-way matching, the pcap format and batch reads of the
receive ring (on a buffer laid out as the kernel lays out its ring)."""

from __future__ import annotations

import socket
import struct
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from testbed.media import tap
from testbed.media.tap import (
    DIRECTION_IN,
    DIRECTION_OUT,
    RECORD_FIELDS,
    TapRecords,
    extended_sequence,
    load_records,
    match_one_way,
    parse_frames,
    pcap_header,
    rtp_filter,
    save_records,
    tap_command,
)
from testbed.media.tap.ring import NET_OFFSET, RING_FRAMES, Batch, Geometry, RingReader
from testbed.sockopts import TP_STATUS_TS_SOFTWARE, TP_STATUS_USER
from tests.helpers.pcap import read_pcap

# ---------------------------------------------------------------- frames and a pcap reader for the tests


def rtp_header(
    seq: int,
    ssrc: int = 0x11223344,
    ts: int = 0,
    pt: int = 111,
    marker: bool = False,
    csrcs: tuple[int, ...] = (),
    extension: bytes | None = None,
    version: int = 2,
) -> bytes:
    first = version << 6 | (0x10 if extension is not None else 0) | len(csrcs)
    head = struct.pack("!BBHII", first, (0x80 if marker else 0) | pt, seq, ts, ssrc)
    head += b"".join(struct.pack("!I", c) for c in csrcs)
    if extension is not None:
        head += struct.pack("!HH", 0xBEDE, len(extension) // 4) + extension
    return head


def frame(
    payload: bytes,
    *,
    tos: int = 46 << 2,
    proto: int = 17,
    fragment: int = 0,
    options: bytes = b"",
    src: str = "198.18.0.10",
    dst: str = "198.18.1.10",
    sport: int = 10000,
    dport: int = 20000,
    ethertype: int = 0x0800,
) -> bytes:
    """An Ethernet frame carrying one IPv4 UDP datagram (checksums zero: nothing here checks them)."""
    ihl = 5 + len(options) // 4
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    ip = (
        struct.pack(
            "!BBHHHBBH4s4s",
            0x40 | ihl,
            tos,
            ihl * 4 + len(udp),
            1,
            fragment,
            64,
            proto,
            0,
            socket.inet_aton(src),
            socket.inet_aton(dst),
        )
        + options
    )
    return b"\x02" * 6 + b"\x04" * 6 + struct.pack("!H", ethertype) + ip + udp


def frames_array(frames: list[bytes], snaplen: int = 200) -> tuple[np.ndarray, np.ndarray]:
    table = np.zeros((len(frames), snaplen), dtype=np.uint8)
    caplen = np.zeros(len(frames), dtype=np.int64)
    for i, f in enumerate(frames):
        kept = f[:snaplen]
        table[i, : len(kept)] = np.frombuffer(kept, dtype=np.uint8)
        caplen[i] = len(kept)
    return table, caplen


# ---------------------------------------------------------------- the BPF filter, judged by the kernel


def kernel_verdict(program, frames: list[bytes]) -> list[int | None]:
    """Bytes each frame keeps after the filter on a unix datagram socket (None: dropped)."""
    sender, receiver = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with sender, receiver:
        tap.attach_filter(receiver, program, lock=False)
        receiver.setblocking(False)
        verdicts = []
        for f in frames:
            sender.send(f)
            try:
                verdicts.append(len(receiver.recv(4096)))
            except BlockingIOError:
                verdicts.append(None)
    return verdicts


RTP = rtp_header(7) + b"\x55" * 160


VERDICTS = [
    ("rtp", frame(RTP), 150),
    ("rtcp sender report", frame(bytes([0x80, 200]) + b"\0" * 26), 14 + 20 + 8 + 28),
    ("srtp-sized rtp, short snap", frame(RTP + b"\xaa" * 10), 150),
    ("ip options", frame(RTP, options=b"\x01" * 8), 150),
    ("first fragment (more fragments set)", frame(RTP, fragment=0x2000), 150),
    ("exactly an rtp header", frame(RTP[:12]), 14 + 20 + 8 + 12),
    ("zero-filled cross traffic", frame(b"\0" * 172), None),
    ("text cross traffic", frame(b"x" * 1400), None),
    ("stun binding request", frame(b"\x00\x01\x00\x00\x21\x12\xa4\x42" + b"\0" * 12), None),
    ("dtls record", frame(bytes([22, 0xFE, 0xFD]) + b"\0" * 40), None),
    ("rtp version 1", frame(rtp_header(1, version=1) + b"\0" * 20), None),
    ("later fragment", frame(RTP, fragment=0x0010), None),
    ("too short for rtp", frame(RTP[:11]), None),
    ("tcp", frame(RTP, proto=6), None),
    ("arp", frame(RTP, ethertype=0x0806), None),
    ("rtp in turn channeldata", frame(struct.pack("!HH", 0x4001, len(RTP)) + RTP), 150),
    (
        "rtcp in turn channeldata",
        frame(struct.pack("!HH", 0x7FFE, 28) + bytes([0x80, 200]) + b"\0" * 26),
        14 + 20 + 8 + 4 + 28,
    ),
    ("stun in channeldata", frame(struct.pack("!HH", 0x4001, 20) + b"\x00\x01" + b"\0" * 18), None),
    ("channeldata too short for rtp", frame(struct.pack("!HH", 0x4001, 11) + RTP[:11]), None),
]


@pytest.mark.parametrize("name, packet, kept", VERDICTS, ids=[v[0] for v in VERDICTS])
def test_filter_verdicts_by_the_kernel(name, packet, kept):
    assert kernel_verdict(rtp_filter(150), [packet]) == [kept], name


def test_filter_program_shape():
    program = rtp_filter(200)
    assert program[-1] == (0x06, 0, 0, 0) and program[-2] == (0x06, 0, 0, 200)
    assert (0xB1, 0, 0, 14) in program, "ldxb 4*([14]&0xf): the IP header length is read, not assumed"
    for at, (code, jt, jf, _) in enumerate(program):
        if code & 0x07 == 0x05:  # jumps stay inside the program
            assert at + 1 + max(jt, jf) < len(program)


# ---------------------------------------------------------------- parsing


def test_parse_fields():
    frames = [
        frame(
            rtp_header(65535, ssrc=0xDEADBEEF, ts=123456789, pt=111, marker=True) + b"\1" * 160,
            tos=46 << 2,
            sport=10002,
            dport=20004,
        ),
        frame(rtp_header(3, pt=0, csrcs=(1, 2)) + b"\1" * 160, tos=0),
        frame(rtp_header(4, pt=96, extension=b"\x10\xff\x00\x00" * 2) + b"\1" * 100, tos=34 << 2, options=b"\x01" * 4),
        frame(bytes([0x81, 201]) + b"\0" * 30),  # RTCP receiver report
        frame(bytes([0x80, 200 - 128]) + b"\0" * 30),  # second byte 72: RTCP by RFC 5761's rule
    ]
    table, caplen = frames_array(frames)
    parsed = parse_frames(table, caplen)
    assert parsed.rtp.tolist() == [True, True, True, False, False]
    assert parsed.rtcp.tolist() == [False, False, False, True, True]
    c = parsed.columns
    assert c["seq"].tolist() == [65535, 3, 4]
    assert c["ssrc"][0] == 0xDEADBEEF and c["rtp_ts"][0] == 123456789
    assert c["pt"].tolist() == [111, 0, 96] and c["marker"].tolist() == [1, 0, 0]
    assert c["dscp"].tolist() == [46, 0, 34]
    assert c["size"].tolist() == [20 + 8 + 12 + 160, 20 + 8 + 20 + 160, 24 + 8 + 12 + 12 + 100]
    assert c["payload"].tolist() == [160, 160, 100]
    assert c["sport"][0] == 10002 and c["dport"][0] == 20004
    assert socket.inet_ntoa(struct.pack("!I", int(c["src"][0]))) == "198.18.0.10"
    assert socket.inet_ntoa(struct.pack("!I", int(c["dst"][0]))) == "198.18.1.10"
    assert parsed.orig_len.tolist()[:2] == [14 + 200, 14 + 208]


def test_parse_rtp_relayed_in_turn_channeldata():
    inner = rtp_header(77, ssrc=0xCAFE, pt=111) + b"\1" * 100
    frames = [
        frame(struct.pack("!HH", 0x4000, len(inner)) + inner),
        frame(struct.pack("!HH", 0x4000, 28) + bytes([0x80, 201]) + b"\0" * 26),  # relayed RTCP
    ]
    table, caplen = frames_array(frames)
    parsed = parse_frames(table, caplen)
    assert parsed.rtp.tolist() == [True, False] and parsed.rtcp.tolist() == [False, True]
    assert parsed.columns["seq"].tolist() == [77] and parsed.columns["ssrc"].tolist() == [0xCAFE]
    assert parsed.columns["payload"].tolist() == [100]
    assert parsed.columns["size"].tolist() == [20 + 8 + 4 + 12 + 100]


def test_parse_rejects_what_is_not_rtp_and_truncated_headers():
    frames = [frame(b"\0" * 50), frame(RTP, proto=6), frame(RTP, fragment=0x10), frame(RTP)[:50]]
    table, caplen = frames_array(frames)
    parsed = parse_frames(table, caplen)
    assert not parsed.rtp.any() and not parsed.rtcp.any()
    assert all(len(v) == 0 for v in parsed.columns.values())


def test_snap_length_cuts_an_extension_header():
    big = rtp_header(9, extension=b"\0" * 200) + b"\1" * 100
    table, caplen = frames_array([frame(big)], snaplen=96)
    parsed = parse_frames(table, caplen)
    assert parsed.rtp.tolist() == [True]
    assert parsed.columns["seq"].tolist() == [9]


# ---------------------------------------------------------------- sequence numbers and matching


def test_extended_sequence_across_rollover_and_reordering():
    seq = np.array([65533, 65534, 65535, 1, 0, 2, 3], dtype=np.uint16)
    assert extended_sequence(seq).tolist() == [65533, 65534, 65535, 65537, 65536, 65538, 65539]


def test_extended_sequence_lands_near_its_reference():
    assert extended_sequence(np.array([2, 3], dtype=np.uint16), reference=65530).tolist() == [65538, 65539]
    assert extended_sequence(np.array([65535], dtype=np.uint16), reference=65536 + 3).tolist() == [65535]
    assert extended_sequence(np.array([], dtype=np.uint16)).tolist() == []


@settings(max_examples=50, deadline=None)
@given(start=st.integers(0, 65535), count=st.integers(1, 3000), seed=st.integers(0, 2**32 - 1))
def test_extended_sequence_recovers_the_truth(start, count, seed):
    rng = np.random.default_rng(seed)
    truth = start + np.arange(count)
    order = np.argsort(np.arange(count) + rng.uniform(0, 5, count))  # local reordering
    kept = np.sort(rng.choice(count, size=max(1, count * 9 // 10), replace=False))  # 10% loss
    arrived = truth[order][kept]
    assert extended_sequence((arrived % 65536).astype(np.uint16), reference=start).tolist() == arrived.tolist()


def records(time_ns, seq, ssrc, direction) -> TapRecords:
    n = len(time_ns)
    columns = {name: np.zeros(n, dtype=kind) for name, kind in RECORD_FIELDS.items()}
    columns.update(
        time_ns=np.asarray(time_ns, dtype=np.int64),
        seq=np.asarray(seq, dtype=np.uint16),
        ssrc=np.full(n, ssrc, dtype=np.uint32) if np.isscalar(ssrc) else np.asarray(ssrc, np.uint32),
        direction=np.full(n, direction, dtype=np.uint8),
    )
    return TapRecords(**columns)


def test_match_one_way_rollover_loss_duplicates_and_other_streams():
    seqs = (65530 + np.arange(20)) % 65536
    sent_ns = 1_000_000_000 + np.arange(20) * 20_000_000
    sender = records(sent_ns, seqs, 0xABC, DIRECTION_OUT)
    # the receiver lost the first two and #10, got #12 twice, and also heard another SSRC and echoes
    got = [i for i in range(2, 20) if i != 10] + [12]
    receiver = records(sent_ns[got] + 5_000_000 + np.arange(len(got)), seqs[got], 0xABC, DIRECTION_IN)
    noise = records([1, 2], [seqs[5], seqs[6]], 0xDEF, DIRECTION_IN)
    echo = records([3], [seqs[7]], 0xABC, DIRECTION_OUT)
    merged = TapRecords(
        **{name: np.concatenate([getattr(r, name) for r in (receiver, noise, echo)]) for name in RECORD_FIELDS}
    )
    matched = match_one_way(sender, merged, 0xABC)
    expected = [i for i in range(2, 20) if i != 10]
    assert matched.seq.tolist() == (65530 + np.array(expected)).tolist()
    assert np.all(matched.send_ns == sent_ns[expected])
    assert np.all((matched.delay_ms >= 5) & (matched.delay_ms < 5.001))
    assert match_one_way(sender, merged, 0x999).seq.tolist() == []


def test_match_one_way_from_a_tap_in_the_middle():
    sender = records([10, 20, 30], [1, 2, 3], 7, DIRECTION_OUT)
    router = records([15, 25, 35], [1, 2, 3], 7, DIRECTION_OUT)  # the router's egress tap sends it on
    matched = match_one_way(sender, router, 7, receive_direction=DIRECTION_OUT)
    assert (matched.recv_ns - matched.send_ns).tolist() == [5, 5, 5]


# ---------------------------------------------------------------- pcap and files


def test_pcap_header_is_nanosecond_ethernet():
    header = pcap_header(200)
    assert len(header) == 24
    assert header[:4] == bytes.fromhex("4d3cb2a1")  # 0xa1b23c4d, little-endian as written on this host
    assert struct.unpack("<IHHiIII", header) == (0xA1B23C4D, 2, 4, 0, 0, 200, 1)


def test_pcap_records_round_trip_and_size_cap(tmp_path):
    frames = [frame(rtp_header(i) + b"\7" * (20 + 50 * i)) for i in range(5)]
    table, caplen = frames_array(frames, snaplen=120)
    orig = np.array([len(f) for f in frames])
    times = np.array([1_700_000_000_123_456_789 + i * 1_000_000_007 for i in range(5)])
    writer = tap.PcapWriter(tmp_path / "a.pcap", 120, limit=10_000)
    writer.write(times, table, caplen, orig)
    writer.close()
    header, read = read_pcap(tmp_path / "a.pcap")
    assert header == {
        "magic": 0xA1B23C4D,
        "version": (2, 4),
        "thiszone": 0,
        "sigfigs": 0,
        "snaplen": 120,
        "linktype": 1,
    }
    assert [r[0] for r in read] == times.tolist()
    assert [r[2] for r in read] == orig.tolist()
    assert [r[3] for r in read] == [f[:120] for f in frames]

    capped = tap.PcapWriter(tmp_path / "b.pcap", 120, limit=24 + 2 * (16 + 120) + 10)
    capped.write(times, table, caplen, orig)
    capped.close()
    assert len(read_pcap(tmp_path / "b.pcap")[1]) == 2 and capped.skipped == 3
    assert (tmp_path / "b.pcap").stat().st_size <= capped.limit


def test_records_file_round_trip(tmp_path):
    original = records([5, 6], [65535, 0], 0x1234, DIRECTION_IN)
    save_records(
        tmp_path / "x.npz",
        {n: getattr(original, n) for n in RECORD_FIELDS},
        {"interface": "wan", "rtcp": 3, "dropped": 1},
    )
    loaded = load_records(tmp_path / "x")
    assert loaded.interface == "wan" and loaded.rtcp == 3 and loaded.dropped == 1
    assert loaded.structured()["seq"].tolist() == [65535, 0]
    assert all(getattr(loaded, n).dtype == np.dtype(k) for n, k in RECORD_FIELDS.items())


def test_tap_command():
    argv = tap_command("wan", "/tmp/out/gw")
    assert argv[:3] == [sys.executable, "-m", "testbed.media.tap"]
    assert argv[argv.index("--interface") + 1] == "wan" and argv[argv.index("--out") + 1] == "/tmp/out/gw"


# ---------------------------------------------------------------- the receive ring, on a synthetic buffer

# struct tpacket2_hdr and the struct sockaddr_ll after it, as <linux/if_packet.h> lays them out
TPACKET2_HDR = np.dtype(
    {
        "names": ["tp_status", "tp_len", "tp_snaplen", "tp_mac", "tp_net", "tp_sec", "tp_nsec", "sll_pkttype"],
        "formats": ["<u4", "<u4", "<u4", "<u2", "<u2", "<u4", "<u4", "u1"],
        "offsets": [0, 4, 8, 12, 14, 16, 20, 32 + 10],
        "itemsize": 52,
    }
)
READY = TP_STATUS_USER | TP_STATUS_TS_SOFTWARE
SMALL = Geometry.for_snaplen(120, frames=30, block_size=4096)  # 2 blocks of 19 frames of 208 bytes


def ring_buffer(geometry: Geometry = SMALL) -> bytearray:
    """A ring's memory before the kernel wrote anything useful: garbage everywhere, every status KERNEL."""
    buffer = bytearray(b"\xaa" * geometry.size)
    for index in range(geometry.frames):
        buffer[geometry.offset(index) : geometry.offset(index) + 4] = bytes(4)
    return buffer


def put(
    buffer: bytearray,
    index: int,
    packet: bytes,
    *,
    time_ns: int,
    outgoing: bool = False,
    status: int = READY,
    mac: int = 66,
    snaplen: int = 120,
    geometry: Geometry = SMALL,
) -> None:
    """Write frame ``index`` as tpacket_rcv would: the header, then the packet cut at ``snaplen`` at tp_mac."""
    at = geometry.offset(index)
    header = np.zeros(1, TPACKET2_HDR)
    kept = packet[:snaplen]
    header[0] = (status, len(packet), len(kept), mac, mac + 14, *divmod(time_ns, 1_000_000_000), 4 if outgoing else 0)
    view = np.frombuffer(buffer, np.uint8, count=geometry.frame_size, offset=at)
    view[: TPACKET2_HDR.itemsize] = header.view(np.uint8)
    view[mac : mac + len(kept)] = np.frombuffer(kept, np.uint8)


def status_of(buffer: bytearray, index: int, geometry: Geometry = SMALL) -> int:
    return int(np.frombuffer(buffer, TPACKET2_HDR, count=1, offset=geometry.offset(index))["tp_status"][0])


def packet(seq: int, payload: int = 20) -> bytes:
    return frame(rtp_header(seq) + b"\x55" * payload)


def test_ring_geometry_fits_a_header_and_the_snap_length():
    g = Geometry.for_snaplen(200)
    assert g.frame_size % 16 == 0 and g.frame_size >= NET_OFFSET + 200
    assert g.frames >= RING_FRAMES and g.frames_per_block * g.frame_size <= g.block_size
    assert g.block_size % 4096 == 0 and g.block_size & (g.block_size - 1) == 0
    assert struct.unpack("IIII", g.request()) == (g.block_size, g.blocks, g.frame_size, g.frames)
    assert (SMALL.frame_size, SMALL.frames_per_block, SMALL.blocks) == (208, 19, 2)
    assert SMALL.offset(19) == 4096 and SMALL.offset(20) == 4096 + 208


def test_ring_reads_the_ready_run_and_hands_it_back():
    buffer = ring_buffer()
    base = 1_700_000_000_123_456_789
    for i in range(5):
        put(buffer, i, packet(i, payload=20 + i), time_ns=base + i * 1000, outgoing=i % 2 == 1)
    put(buffer, 6, packet(6), time_ns=base + 6000)  # complete before frame 5 (another CPU): must wait
    reader = RingReader(buffer, SMALL, 120)
    batch = reader.read(100)
    assert len(batch) == 5 and reader.head == 5
    assert batch.time_ns.tolist() == [base + i * 1000 for i in range(5)]
    assert batch.outgoing.tolist() == [False, True, False, True, False] and batch.software_stamp.all()
    assert batch.caplen.tolist() == [len(packet(i, 20 + i)) for i in range(5)] == batch.wire_len.tolist()
    assert batch.frames.shape == (5, 120)
    for i in range(5):
        expected = packet(i, 20 + i)
        assert batch.frames[i].tobytes() == expected + bytes(120 - len(expected)), "zero past caplen"
    assert [status_of(buffer, i) for i in range(7)] == [0] * 6 + [READY], "frames 0-4 are the kernel's again"
    assert len(reader.read(100)) == 0

    put(buffer, 5, packet(5), time_ns=base + 5000, status=TP_STATUS_USER)  # stamped by the ring, not the stack
    batch = reader.read(100)
    assert batch.time_ns.tolist() == [base + 5000, base + 6000] and batch.software_stamp.tolist() == [False, True]
    parsed = parse_frames(batch.frames, batch.caplen)
    assert parsed.columns["seq"].tolist() == [5, 6]


def test_ring_read_wraps_around_and_crosses_blocks():
    buffer = ring_buffer()
    reader = RingReader(buffer, SMALL, 120)
    last = SMALL.frames - 1
    reader.head = last - 2
    order = [last - 2, last - 1, last, 0, 1, 2]
    for seq, index in enumerate(order):
        put(buffer, index, packet(seq), time_ns=seq)
    batch = reader.read(4)  # a limit: the rest stays for the next read
    assert batch.time_ns.tolist() == [0, 1, 2, 3] and reader.head == 1
    batch = reader.read(100)
    assert batch.time_ns.tolist() == [4, 5] and reader.head == 3
    assert parse_frames(batch.frames, batch.caplen).columns["seq"].tolist() == [4, 5]
    assert all(status_of(buffer, i) == 0 for i in order)

    reader.head = 17  # frames 17-21: the run goes on in the second block, past the first one's slack
    for seq, index in enumerate(range(17, 22)):
        put(buffer, index, packet(100 + seq), time_ns=seq)
    batch = reader.read(100)
    assert parse_frames(batch.frames, batch.caplen).columns["seq"].tolist() == list(range(100, 105))


def test_ring_read_follows_each_frames_mac_offset_and_snap_length():
    buffer = ring_buffer()
    long = packet(1, payload=400)
    put(buffer, 0, long, time_ns=1)  # cut at the snap length; tp_len says how long it was
    put(buffer, 1, packet(2), time_ns=2, mac=62)  # a frame whose link header starts elsewhere
    batch = RingReader(buffer, SMALL, 120).read(10)
    assert batch.caplen.tolist() == [120, len(packet(2))] and batch.wire_len.tolist() == [len(long), len(packet(2))]
    assert batch.frames[0].tobytes() == long[:120]
    assert batch.frames[1].tobytes() == packet(2) + bytes(120 - len(packet(2)))
    joined = Batch.concatenate([batch, batch])
    assert len(joined) == 4 and joined.frames.shape == (4, 120)
