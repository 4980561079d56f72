"""An unfiltered capture for tests: every frame on every interface of the namespace but loopback, one
JSON line each (type, and for IPv4 the protocol, addresses and ports), until SIGTERM or N seconds.

``python capture_all.py SECONDS`` (run inside a node); prints ``ready`` first."""

from __future__ import annotations

import json
import select
import signal
import socket
import struct
import sys
import time

ETH_P_ALL = 0x0003
TYPES = {0x0800: "ipv4", 0x0806: "arp", 0x86DD: "ipv6"}


def main() -> None:
    seconds = float(sys.argv[1])
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    print("ready", flush=True)
    deadline = time.monotonic() + seconds
    while not stop and time.monotonic() < deadline:
        if not select.select([sock], [], [], 0.2)[0]:
            continue
        frame, address = sock.recvfrom(65535)
        if address[0] == "lo":
            continue
        ethertype = struct.unpack_from("!H", frame, 12)[0]
        record = {"interface": address[0], "type": TYPES.get(ethertype, hex(ethertype))}
        if ethertype == 0x0800:
            header = (frame[14] & 0x0F) * 4
            record.update(proto=frame[23], src=socket.inet_ntoa(frame[26:30]), dst=socket.inet_ntoa(frame[30:34]))
            if frame[23] in (6, 17):
                record["sport"], record["dport"] = struct.unpack_from("!HH", frame, 14 + header)
        elif ethertype == 0x86DD:
            record.update(next_header=frame[20], src=socket.inet_ntop(socket.AF_INET6, frame[22:38]))
        print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
