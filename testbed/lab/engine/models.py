"""netem's impairment model, decided packet by packet for the userspace engine (NFQUEUE).

Pure decision logic: no sockets, no clocks. One module on purpose (over the 400-line guide): the loss
state machines, the correlation arithmetic and the distribution tables share netem's u32 conventions,
and each is checked against the same kernel source. Given a packet's arrival time and bytes, ``decide`` says
whether to drop it, when to release it, whether to corrupt it and whether a copy goes out too. The
only I/O is reading iproute2's distribution tables and trace files.

The specification is the kernel's ``net/sched/sch_netem.c`` with the arguments iproute2's
``tc/q_netem.c`` gives it (what ``testbed.lab.impair.netem_arguments`` builds), re-implemented in the
kernel's own u32 arithmetic so that its quirks carry over:

- Probabilities are u32 thresholds, ``rint(percent / 100 * 0xFFFFFFFF)``, compared with u32 random
  numbers as netem compares them (``loss >= rnd`` and so on).
- Correlated random numbers (``get_crandom``): ``next = (rnd * (2^32 - rho') + last * rho') >> 32``
  with ``rho' = rho + 1``, i.e. ``(1-rho)*U + rho*last``. Compared with a threshold (random loss,
  duplicate, corrupt, reorder) it pulls the numbers towards the middle, so ``loss random P CORR``
  loses far less than P when P < 50% (5% with 25% correlation loses ~0.2%, 30% with 50% ~13%; only
  50% keeps its rate): netem's known behaviour, kept so that results agree with the kernel
  (``gilbert_elliott`` is the model for bursty loss).
- Delay (``tabledist``): uniform is ``mu - sigma + rnd % (2*sigma)`` (sigma in ns); the other
  distributions look up ``table[rnd % 4096]`` (iproute2's ``*.dist``, an inverse CDF scaled by
  8192 = one sigma) and give ``mu + sigma * value / 8192``. Both take the *low* bits of the
  correlated number, which the correlation leaves random: in netem ``delay_correlation`` has no
  measurable effect on delays (lag-1 autocorrelation ~0, full spread), and so it is here. normal is
  clipped at +-4 sigma; pareto (shape 3) has median ``mu - 0.32 sigma``, minimum ``mu - 0.67
  sigma``, is clipped at ``mu + 4 sigma`` and its standard deviation is 0.82 sigma; paretonormal is
  ``(normal + 3 pareto) / 4`` of the same quantile. Negative delays release the packet at once. No
  draw when sigma is 0, as in netem.
- Loss: ``random`` (correlated as above), ``gilbert_elliott`` (netem's gemodel: the packet's fate
  follows the state *before* this packet's transition; 1-h is the loss in the bad state, 1-k in the
  good one) and ``four_state`` (Salsano et al.'s GI model as in ``loss_4state``: states 1 good
  reception, 2 burst reception, 3 burst loss, 4 isolated loss; a packet is lost when the chain moves
  into 3 or 4; the ranges are contiguous, as after the kernel's 2026 "probability gaps" fix).
- Order of decisions per packet, as in ``netem_enqueue``: duplicate?, lost?, (lost and duplicated
  means exactly one packet goes on), corrupt?, then the copy goes through the whole model again
  (netem re-enqueues it at the root qdisc: its own loss, corruption, reorder and delay, but it is
  never duplicated again), then reorder? and delay of the original.
- Reorder: tc sets ``gap 1``, so every packet is sent at once (no delay) with probability
  ``reorder`` (correlated by ``reorder_correlation``); the others get the delay.

Where this model knowingly differs from netem:

- Per-flow order (default): netem's queue releases each packet at its own time, so jitter reorders
  packets of a flow. Here a packet is released no earlier than the flow's previous packet
  (``per_flow_order=True``), as a real path with queueing jitter does; ``per_flow_order=False`` is
  netem's behaviour. Packets picked for ``reorder`` skip the flow's order (that is their purpose).
- Corruption flips one random bit of the bytes the engine sees: the IP packet. netem flips a bit
  anywhere in the skb's linear data, which on egress also covers the 14-byte Ethernet header that
  NFQUEUE never shows. Either way the receiver usually discards the packet (IP or L4 checksum);
  netem completes offloaded checksums before flipping, and so does the kernel before queueing to
  NFQUEUE without the GSO flag.
- Rate, queue limit, ECN, slots and ``gap`` > 1 are not modelled here (rate shaping stays with
  HTB/TBF; the queue limit is the engine's).
- A trace (``load_trace``) makes delay, jitter and loss change over time, which netem cannot do.
"""

from __future__ import annotations

import bisect
import os
import random
import struct
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from statistics import NormalDist
from typing import TYPE_CHECKING

import numpy as np

from testbed.errors import InputError
from testbed.scenario.trace import Trace

if TYPE_CHECKING:  # the engine process reads them as plain attributes (engine.impairment_fields)
    from testbed.scenario.model import Impairment, LossSpec

Rng = np.random.Generator | random.Random
FlowKey = tuple[int | bytes, ...]

DIST_SCALE = 8192  # NETEM_DIST_SCALE: a table value of 8192 is one sigma
TABLE_SIZE = 4096  # entries in iproute2's generated tables
TABLE_DISTRIBUTIONS = ("normal", "pareto", "paretonormal")
# where tc finds *.dist (its TC_LIB_DIR, else the distribution's libdir)
TC_LIB_DIRS = ("/usr/lib/x86_64-linux-gnu/tc", "/usr/lib64/tc", "/usr/lib/tc", "/usr/local/lib/tc")
MAX_TABLE = 16384  # NETEM_DIST_MAX
RANDOM_BLOCK = 4096  # random numbers drawn from the generator at once
U32_MAX = 0xFFFFFFFF
FLOW_PRUNE_EVERY = 4096  # packets between sweeps of flows whose last release has passed


# ---------------------------------------------------------------- distribution tables


def read_dist_file(path: Path) -> tuple[int, ...]:
    """A tc ``*.dist`` file: ``#`` comment lines, then whitespace-separated integers (s16)."""
    values: list[int] = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if line.startswith("#") or not line.strip():
            continue
        for word in line.split():
            try:
                value = int(word, 0)
            except ValueError:
                raise InputError(f"{path}:{number}: {word!r} is not an integer") from None
            if not -32768 <= value <= 32767:
                raise InputError(f"{path}:{number}: {value} is outside -32768..32767")
            values.append(value)
    if not 0 < len(values) <= MAX_TABLE:
        raise InputError(f"{path}: {len(values)} values; a distribution table has 1..{MAX_TABLE}")
    return tuple(values)


def computed_table(name: str) -> tuple[int, ...]:
    """The table iproute2's ``netem/{normal,pareto,paretonormal}.c`` generate (checked equal to the
    installed files of iproute2 6.1 within 1 unit of 8192 per sigma)."""
    k = np.arange(TABLE_SIZE)
    inverse = NormalDist().inv_cdf
    # normal.c keeps, for table index 4k of 16384, the largest x with rint(16384 * Phi(x)) == 4k
    normal = np.rint(np.array([inverse((4 * i + 0.5) / 16384) for i in k]) * DIST_SCALE)
    # pareto.c: shape a=3, x_m=1 quantile at k/4096, centred on its mean 1.5 and scaled by 4/3
    pareto = np.minimum(np.rint(((1 - k / TABLE_SIZE) ** (-1 / 3) - 1.5) * (4 / 3) * DIST_SCALE), 32767)
    if name == "normal":
        table = normal
    elif name == "pareto":
        table = pareto
    elif name == "paretonormal":
        table = np.trunc((normal + 3 * pareto) / 4)  # C integer division
    else:
        raise ValueError(f"no computed table for {name!r}; known: {', '.join(TABLE_DISTRIBUTIONS)}")
    return tuple(int(v) for v in np.clip(table, -32768, 32767))


@cache
def distribution_table(name: str) -> tuple[int, ...]:
    """The table tc would load for ``distribution NAME``: iproute2's file if installed, else computed."""
    directories = [os.environ["TC_LIB_DIR"]] if os.environ.get("TC_LIB_DIR") else []
    for directory in [*directories, *TC_LIB_DIRS]:
        path = Path(directory) / f"{name}.dist"
        if path.is_file():
            return read_dist_file(path)
    return computed_table(name)


# ---------------------------------------------------------------- random numbers


def threshold(percent: float) -> int:
    """A percentage as netem holds it: a u32 fraction of 0xFFFFFFFF (iproute2's ``set_percent``)."""
    return round(percent / 100 * U32_MAX)


class _Random32:
    """Uniform u32 random numbers, drawn from the generator in blocks (one call per packet is cheap)."""

    __slots__ = ("_draw", "_next")

    def __init__(self, rng: Rng):
        if isinstance(rng, np.random.Generator):
            self._draw: Callable[[], list[int]] = lambda: rng.integers(
                0, 1 << 32, RANDOM_BLOCK, dtype=np.uint64
            ).tolist()
        elif isinstance(rng, random.Random):
            self._draw = lambda: [rng.getrandbits(32) for _ in range(RANDOM_BLOCK)]
        else:
            raise TypeError(f"rng must be a numpy.random.Generator or random.Random, not {type(rng).__name__}")
        self._next = iter(self._draw()).__next__

    def __call__(self) -> int:
        try:
            return self._next()
        except StopIteration:
            self._next = iter(self._draw()).__next__
            return self._next()


class _Correlated:
    """netem's ``get_crandom``: each number leans on the last one by ``rho``."""

    __slots__ = ("_random", "_rho", "_keep", "_last")

    def __init__(self, random32: Callable[[], int], percent: float):
        self._random = random32
        self._rho = threshold(percent) + 1
        self._keep = (1 << 32) - self._rho
        self._last = random32()  # init_crandom starts from a random value

    def __call__(self) -> int:
        self._last = value = (self._random() * self._keep + self._last * self._rho) >> 32
        return value


def _correlated(random32: Callable[[], int], percent: float) -> Callable[[], int]:
    return _Correlated(random32, percent) if percent else random32


# ---------------------------------------------------------------- loss generators


class _RandomLoss:
    """``loss random P [CORR]``: lost when the (correlated) number is at most P."""

    __slots__ = ("_p", "_random")

    def __init__(self, random32: Callable[[], int], percent: float, correlation: float):
        self._p = threshold(percent)
        self._random = _correlated(random32, correlation)

    def __call__(self) -> bool:
        return self._p > 0 and self._p >= self._random()


class _GilbertElliott:
    """``loss gemodel p r 1-h 1-k``: a transition draw, then a loss draw with the old state's rate."""

    __slots__ = ("_random", "_p", "_r", "_h", "_loss_good", "_bad")

    def __init__(self, random32: Callable[[], int], loss: LossSpec):
        self._random = random32
        self._p, self._r = threshold(loss.p or 0), threshold(loss.r or 0)
        self._h = U32_MAX - threshold(loss.loss_bad)  # tc sends h; netem loses when rnd > h
        self._loss_good = threshold(loss.loss_good)
        self._bad = False

    def __call__(self) -> bool:
        random32 = self._random
        if self._bad:
            if random32() < self._r:
                self._bad = False
            return random32() > self._h
        if random32() < self._p:
            self._bad = True
        return random32() < self._loss_good


class _FourState:
    """``loss state p13 p31 p32 p23 p14``: lost when the chain moves into state 3 or 4."""

    __slots__ = ("_random", "_p13", "_p31", "_p32", "_p23", "_p14", "_state")

    def __init__(self, random32: Callable[[], int], loss: LossSpec):
        self._random = random32
        self._p13, self._p31 = threshold(loss.p13 or 0), threshold(loss.p31 or 0)
        self._p32, self._p23, self._p14 = threshold(loss.p32), threshold(loss.p23), threshold(loss.p14)
        self._state = 1

    def __call__(self) -> bool:
        rnd = self._random()
        state = self._state
        if state == 1:
            if rnd < self._p14:
                self._state = 4
            elif rnd < self._p14 + self._p13:
                self._state = 3
        elif state == 2:
            if rnd < self._p23:
                self._state = 3
        elif state == 3:
            if rnd < self._p32:
                self._state = 2
            elif rnd < self._p32 + self._p31:
                self._state = 1
        else:
            self._state = 1
        return self._state >= 3


def _no_loss() -> bool:
    return False


def loss_generator(loss: LossSpec | None, random32: Callable[[], int]) -> Callable[[], bool]:
    """A callable that says, packet by packet, whether netem's loss model drops it."""
    if loss is None:
        return _no_loss
    if loss.model == "random":
        return _RandomLoss(random32, loss.rate or 0, loss.correlation)
    if loss.model == "gilbert_elliott":
        return _GilbertElliott(random32, loss)
    return _FourState(random32, loss)


# ---------------------------------------------------------------- traces (format: testbed.scenario.trace)


# ---------------------------------------------------------------- packets


_IPV4 = struct.Struct("!B8xB2x4s4s")  # version/IHL, protocol, source, destination
_PORTS = struct.Struct("!HH")
_PORT_PROTOCOLS = frozenset({6, 17, 33, 132, 136})  # TCP, UDP, DCCP, SCTP, UDP-Lite


def flow_key(packet: bytes) -> FlowKey:
    """(protocol, source, destination, source port, destination port) of an IP packet.

    IPv4 (IHL-aware) and IPv6 (without extension headers). Protocols without ports, fragments (all of
    them, so a datagram's fragments stay together) and truncated packets give (protocol, source,
    destination). Anything unparsable gives ``()``: one shared flow.
    """
    if len(packet) < 20:
        return ()
    first = packet[0]
    if first >> 4 == 4:
        header = (first & 0x0F) * 4
        _, protocol, source, destination = _IPV4.unpack_from(packet)
        fragment = packet[6] & 0x3F or packet[7]  # MF flag or a fragment offset
        if header >= 20 and protocol in _PORT_PROTOCOLS and not fragment and len(packet) >= header + 4:
            return (protocol, source, destination, *_PORTS.unpack_from(packet, header))
        return (protocol, source, destination)
    if first >> 4 == 6 and len(packet) >= 40:
        protocol = packet[6]
        if protocol in _PORT_PROTOCOLS and len(packet) >= 44:
            return (protocol, packet[8:24], packet[24:40], *_PORTS.unpack_from(packet, 40))
        return (protocol, packet[8:24], packet[24:40])
    return ()


def corrupt_payload(payload: bytes, rng: Rng) -> bytes:
    """``payload`` with one bit flipped: a uniformly random bit of the whole packet (IP header included),
    as netem flips one bit anywhere in the data it holds. An empty payload comes back unchanged."""
    if not payload:
        return payload
    bits = len(payload) * 8
    bit = int(rng.integers(bits)) if isinstance(rng, np.random.Generator) else rng.randrange(bits)
    data = bytearray(payload)
    data[bit >> 3] ^= 1 << (bit & 7)
    return bytes(data)


# ---------------------------------------------------------------- the model


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do with one packet.

    ``release_ns`` is the absolute time to issue the accept verdict (ignored when ``drop``). When
    ``duplicate``, ``copy`` is the copy's own decision (never a drop): send ``corrupt_payload`` of it
    if ``copy.corrupt``, at ``copy.release_ns``.
    """

    drop: bool
    release_ns: int
    duplicate: bool
    corrupt: bool
    copy: Decision | None = None


@dataclass(frozen=True, slots=True)
class _Step:
    """The delay and loss parameters in effect for a while (the whole run without a trace)."""

    mu_ns: int
    sigma_ns: int
    table: tuple[int, ...] | None  # None: uniform
    loss: int | None  # a trace's random loss (u32 threshold); None: the impairment's loss model


class ImpairmentModel:
    """netem's decisions for one direction of a link, packet by packet (see the module docstring)."""

    def __init__(
        self,
        impairment: Impairment,
        rng: Rng,
        *,
        per_flow_order: bool = True,
        trace: Trace | None = None,
        start_ns: int = 0,
    ):
        self.impairment = impairment
        self.per_flow_order = per_flow_order
        self.trace = trace
        self.start_ns = start_ns
        random32 = self._random = _Random32(rng)
        self._loss = loss_generator(impairment.loss, random32)
        # each correlated quantity keeps its own last value, as in netem
        self._delay_random = _correlated(random32, impairment.delay_correlation)
        self._reorder_random = _correlated(random32, impairment.reorder_correlation)
        self._duplicate = threshold(impairment.duplicate)
        self._corrupt = threshold(impairment.corrupt)
        self._reorder = threshold(impairment.reorder)
        self._flows: dict[FlowKey, int] = {}
        self._until_prune = FLOW_PRUNE_EVERY
        table = (
            None if impairment.jitter_distribution == "uniform" else distribution_table(impairment.jitter_distribution)
        )
        base = _Step(round(impairment.delay * 1e9), round(impairment.jitter * 1e9), table, None)
        self._step = base
        self._trace_times: tuple[int, ...] = ()
        self._trace_steps: list[_Step] = []
        if trace is not None:
            self._trace_times = trace.times_ns
            normal = distribution_table("normal")
            for row in trace.rows:
                jitter = (base.sigma_ns, base.table) if row.jitter_ms is None else (round(row.jitter_ms * 1e6), normal)
                loss = None if row.loss_pct is None else threshold(row.loss_pct)
                self._trace_steps.append(_Step(round(row.delay_ms * 1e6), *jitter, loss))

    def decide(self, arrival_ns: int, packet: bytes) -> Decision:
        """The fate of one packet that arrived at ``arrival_ns`` (any monotonic clock, in ns)."""
        if self._trace_steps:
            index = bisect.bisect_right(self._trace_times, arrival_ns - self.start_ns) - 1
            self._step = self._trace_steps[index if index > 0 else 0]
        random32 = self._random
        duplicated = self._duplicate > 0 and self._duplicate >= random32()
        if self._lost():
            if not duplicated:  # lost and duplicated: one packet goes on
                return Decision(True, arrival_ns, False, False)
            duplicated = False
        corrupt = self._corrupt > 0 and self._corrupt >= random32()
        key = flow_key(packet) if self.per_flow_order else None
        copy = None
        if duplicated and not self._lost():
            copy_corrupt = self._corrupt > 0 and self._corrupt >= random32()
            copy = Decision(False, self._release(arrival_ns, key), False, copy_corrupt)
        return Decision(False, self._release(arrival_ns, key), copy is not None, corrupt, copy)

    def _lost(self) -> bool:
        loss = self._step.loss
        if loss is None:
            return self._loss()
        return loss > 0 and loss >= self._random()

    def _release(self, arrival_ns: int, key: FlowKey | None) -> int:
        if self._reorder > 0 and self._reorder >= self._reorder_random():
            return arrival_ns  # sent at once, ahead of its flow: that is the reordering asked for
        step = self._step
        sigma = step.sigma_ns
        if sigma == 0:
            delay = step.mu_ns
        elif step.table is None:
            delay = step.mu_ns - sigma + self._delay_random() % (2 * sigma)
        else:
            table = step.table
            delay = step.mu_ns + round(sigma * table[self._delay_random() % len(table)] / DIST_SCALE)
        release = arrival_ns + delay if delay > 0 else arrival_ns
        if key is not None:
            flows = self._flows
            last = flows.get(key)
            if last is not None and last > release:
                release = last
            flows[key] = release
            self._until_prune -= 1
            if self._until_prune <= 0:
                self._prune(arrival_ns)
        return release

    def _prune(self, now_ns: int) -> None:
        """Forget flows whose last release has passed: they no longer hold anything back."""
        self._until_prune = max(FLOW_PRUNE_EVERY, len(self._flows))
        self._flows = {key: last for key, last in self._flows.items() if last > now_ns}
