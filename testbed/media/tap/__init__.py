"""Per-packet truth, independent of aiortc: every RTP packet seen on one interface of a node.

A tap is its own process inside a node (:mod:`.capture`, ``python -m testbed.media.tap``). It opens an
``AF_PACKET`` socket on one interface, lets a classic BPF program (:mod:`.bpf`) pass only what may be
RTP, takes the frames from a memory-mapped ring in batches (:mod:`.ring`), parses the headers
(:mod:`.frames`) and records each RTP packet leaving (``direction`` 1) and arriving (0) with the
kernel's timestamp (:mod:`.records`, ``PREFIX.npz``), writing every captured frame to ``PREFIX.pcap`` as
it goes (:mod:`.pcap`). Namespaces share the host clock, so the one-way delay of a packet is (receiver
tap time - sender tap time) for the same (SSRC, sequence number); :func:`match_one_way` pairs them
(:mod:`.oneway`). SRTP leaves the RTP header in clear, so this works on WebRTC media as well as on
plain RTP.
"""

from __future__ import annotations

from testbed.media.tap.bpf import Instruction, SockFilter, SockFprog, attach_filter, rtp_filter
from testbed.media.tap.capture import DEFAULT_PCAP_LIMIT_MB, Tap, main, tap_command
from testbed.media.tap.frames import DEFAULT_SNAPLEN, ETH_HEADER, MIN_SNAPLEN, Parsed, parse_frames
from testbed.media.tap.oneway import OneWay, match_one_way
from testbed.media.tap.pcap import PCAP_HEADER, PCAP_RECORD, PcapWriter, pcap_header, pcap_records
from testbed.media.tap.records import (
    DIRECTION_IN,
    DIRECTION_OUT,
    RECORD_FIELDS,
    TapRecords,
    empty_columns,
    load_records,
    save_records,
)
from testbed.rtp import extended_sequence

__all__ = [
    "DEFAULT_PCAP_LIMIT_MB",
    "DEFAULT_SNAPLEN",
    "DIRECTION_IN",
    "DIRECTION_OUT",
    "ETH_HEADER",
    "MIN_SNAPLEN",
    "PCAP_HEADER",
    "PCAP_RECORD",
    "RECORD_FIELDS",
    "Instruction",
    "OneWay",
    "Parsed",
    "PcapWriter",
    "SockFilter",
    "SockFprog",
    "Tap",
    "TapRecords",
    "attach_filter",
    "empty_columns",
    "extended_sequence",
    "load_records",
    "main",
    "match_one_way",
    "parse_frames",
    "pcap_header",
    "pcap_records",
    "rtp_filter",
    "save_records",
    "tap_command",
]
