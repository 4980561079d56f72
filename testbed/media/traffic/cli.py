"""The command line of the cross-traffic processes (``python -m testbed.media.traffic``).

``... sink --kind tcp|udp --port P [--flows N] [--report-every S] [--idle S] [--bind ADDR]``
``... source --kind tcp_bulk|udp_cbr|udp_onoff --to ADDR --port P [--flows N] [--rate BPS]
[--packet-size B] [--dscp D] [--duration S] [--on S --off S] [--connect-timeout S]``

Exit status (``ExitCode``): 0 after a ``done`` event, 1 after an ``error`` event.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from testbed.errors import ExitCode
from testbed.media.traffic.rates import KINDS
from testbed.media.traffic.sink import Sink
from testbed.media.traffic.source import Failed, Source
from testbed.proc import emit


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} is not positive")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port {text} is outside 0..65535")
    return value


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(
        prog="python -m testbed.media.traffic",
        description="cross traffic: TCP bulk, constant-rate UDP and on/off UDP bursts",
    )
    roles = main.add_subparsers(dest="role", required=True)
    sink = roles.add_parser("sink", help="receive and report goodput per interval")
    sink.add_argument("--kind", choices=("tcp", "udp"), required=True)
    sink.add_argument("--port", type=_port, required=True, help="0: the kernel picks (reported in 'ready')")
    sink.add_argument("--flows", type=int, default=1, help="TCP: connections to accept, then end when all close")
    sink.add_argument("--report-every", type=_positive, default=1.0, metavar="SECONDS")
    sink.add_argument(
        "--idle",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="end this long after the last arrival (0: only on SIGTERM or when TCP flows close)",
    )
    sink.add_argument("--bind", default="0.0.0.0", help="address to listen on (:: for IPv6)")
    source = roles.add_parser("source", help="send cross traffic")
    source.add_argument("--kind", choices=KINDS, required=True)
    source.add_argument("--to", required=True, metavar="ADDR")
    source.add_argument("--port", type=_port, required=True)
    source.add_argument("--flows", type=int, default=1)
    source.add_argument("--rate", type=_positive, help="UDP: bits/s on the wire (payload + 42 bytes a datagram)")
    source.add_argument("--packet-size", type=int, default=1200, help="UDP payload bytes")
    source.add_argument("--dscp", type=int, default=0)
    source.add_argument("--duration", type=_positive, help="seconds; default: until SIGTERM")
    source.add_argument("--on", type=_positive, help="udp_onoff: burst seconds")
    source.add_argument("--off", type=_positive, help="udp_onoff: pause seconds")
    source.add_argument(
        "--connect-timeout", type=_positive, default=5.0, help="tcp_bulk: keep retrying refused connects this long"
    )
    return main


def main(argv: Sequence[str] | None = None) -> ExitCode:
    args = parser().parse_args(argv)
    try:
        if args.role == "sink":
            if not 1 <= args.flows <= 64:
                raise Failed(f"--flows {args.flows}: use 1..64")
            Sink(args.kind, args.port, args.flows, args.report_every, args.idle, args.bind).run()
            return ExitCode.OK
        if not 1 <= args.flows <= 64 or not 0 <= args.dscp <= 63:
            raise Failed(f"--flows {args.flows} / --dscp {args.dscp}: use flows 1..64, dscp 0..63")
        if args.kind != "tcp_bulk" and args.rate is None:
            raise Failed(f"{args.kind} needs --rate")
        if args.kind == "udp_onoff" and (args.on is None or args.off is None):
            raise Failed("udp_onoff needs --on and --off")
        return Source(args).run()
    except Failed as failure:
        emit("error", message=str(failure))
        return ExitCode.FAILED
    except OSError as error:  # e.g. the port is taken, or the address is not in this node
        emit("error", message=f"{args.role}: {error}")
        return ExitCode.FAILED
