"""The lab's signalling service and its clients: offers and answers carried over WSS (WebSocket over TLS)
on TCP 443 through the lab, as a cloud dialer's softphone reaches its vendor's signalling servers.

The service is a mailbox: a client ``put``s a description under a key (``CALL/offer``), another ``get``s
it (waiting until it is there). The harness relays only the keys; the descriptions themselves cross the
router, its firewall rules and its queues, so a blocked 443 fails a call's setup and a full queue
delays it. A browser's page does not open the socket itself: its node's agent signals for it, from the
same node over the same path.

``python -m testbed.media.signalling --address A --port 443 --cert C --key K`` prints one ready line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import sys
import time
from typing import Any

from testbed.errors import ExitCode
from testbed.proc import STOP_SIGNALS, write_message

GET_TIMEOUT_S = 30.0


class Mailbox:
    """Descriptions by key; a get waits for its put."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.arrived: dict[str, asyncio.Event] = {}

    def _event(self, key: str) -> asyncio.Event:
        return self.arrived.setdefault(key, asyncio.Event())

    def put(self, key: str, value: Any) -> None:
        self.values[key] = value
        self._event(key).set()

    async def get(self, key: str, timeout: float) -> Any:
        await asyncio.wait_for(self._event(key).wait(), timeout)
        return self.values[key]


async def serve(address: str, port: int, cert: str, key: str) -> None:
    from websockets.asyncio.server import ServerConnection
    from websockets.asyncio.server import serve as ws_serve

    mailbox = Mailbox()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    async def handle(connection: ServerConnection) -> None:
        async for raw in connection:
            request = json.loads(raw)
            try:
                if "put" in request:
                    mailbox.put(request["put"], request["value"])
                    reply: dict[str, Any] = {"ok": True}
                else:
                    value = await mailbox.get(request["get"], float(request.get("timeout", GET_TIMEOUT_S)))
                    reply = {"ok": True, "value": value}
            except TimeoutError:
                reply = {"ok": False, "error": f"nothing was put under {request.get('get')!r} in time"}
            await connection.send(json.dumps(reply))

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, stop.set)
    async with ws_serve(handle, address, port, ssl=context, max_size=4 << 20):
        write_message({"event": "ready", "address": address, "port": port})
        await stop.wait()


class SignallingError(Exception):
    pass


async def exchange(url: str, ca_file: str, requests: list[dict[str, Any]], timeout: float) -> list[Any]:
    """Send ``requests`` (puts and gets) in order over one WSS connection; each reply's value (None for
    a put). Raises SignallingError with what went wrong (unreachable, refused, timed out)."""
    from websockets.asyncio.client import connect

    context = ssl.create_default_context(cafile=ca_file)
    replies: list[Any] = []
    try:
        async with asyncio.timeout(timeout):
            async with connect(url, ssl=context, open_timeout=timeout, max_size=4 << 20) as connection:
                for request in requests:
                    await connection.send(json.dumps({**request, "timeout": timeout}))
                    reply = json.loads(await connection.recv())
                    if not reply.get("ok"):
                        raise SignallingError(f"signalling over {url}: {reply.get('error')}")
                    replies.append(reply.get("value"))
    except TimeoutError:
        raise SignallingError(f"signalling over {url} did not complete within {timeout:g}s") from None
    except (OSError, ssl.SSLError) as exc:
        raise SignallingError(f"signalling over {url} failed: {type(exc).__name__}: {exc}") from None
    except Exception as exc:  # websockets' own errors (handshake refused, connection closed)
        if isinstance(exc, SignallingError):
            raise
        raise SignallingError(f"signalling over {url} failed: {type(exc).__name__}: {exc}") from None
    return replies


class Signalling:
    """An agent's side: put its legs' descriptions, fetch the other side's, and time each exchange."""

    def __init__(self, url: str, ca_file: str, timeout: float = GET_TIMEOUT_S):
        self.url, self.ca_file, self.timeout = url, ca_file, timeout
        self.seconds: dict[str, float] = {}  # per call: time spent signalling through the lab

    async def _timed(self, calls: list[str], requests: list[dict[str, Any]]) -> list[Any]:
        started = time.monotonic()
        values = await exchange(self.url, self.ca_file, requests, self.timeout)
        for call in calls:
            self.seconds[call] = round(self.seconds.get(call, 0.0) + time.monotonic() - started, 4)
        return values

    async def publish(self, calls: list[str], what: str, descriptions: list[Any]) -> list[dict[str, Any]]:
        """Put each description; return what the harness relays instead: ``{"signalled": KEY}``."""
        keys = [f"{call}/{what}" for call in calls]
        live = [(k, d) for k, d in zip(keys, descriptions, strict=True) if not (isinstance(d, dict) and "error" in d)]
        await self._timed(calls, [{"put": key, "value": description} for key, description in live])
        return [
            d if isinstance(d, dict) and "error" in d else {"signalled": k}
            for k, d in zip(keys, descriptions, strict=True)
        ]

    async def fetch(self, calls: list[str], remotes: list[Any]) -> list[Any]:
        """The descriptions behind ``{"signalled": KEY}`` tokens (others pass through)."""
        wanted = [r["signalled"] for r in remotes if isinstance(r, dict) and "signalled" in r]
        if not wanted:
            return remotes
        values = iter(await self._timed(calls, [{"get": key} for key in wanted]))
        return [next(values) if isinstance(r, dict) and "signalled" in r else r for r in remotes]


def main() -> int:
    parser = argparse.ArgumentParser(description="the lab's WSS signalling service")
    parser.add_argument("--address", required=True)
    parser.add_argument("--port", type=int, default=443)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.address, args.port, args.cert, args.key))
    return ExitCode.OK


if __name__ == "__main__":
    sys.exit(main())
