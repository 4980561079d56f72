"""netem's model in the userspace engine: delay distributions, loss models, duplicate/corrupt/reorder,
per-flow order, flow keys and traces (pure; seeded, so every statistic below is reproducible)."""

import random
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from testbed.errors import InputError
from testbed.lab.engine.models import (
    DIST_SCALE,
    TC_LIB_DIRS,
    Decision,
    ImpairmentModel,
    computed_table,
    corrupt_payload,
    distribution_table,
    flow_key,
    read_dist_file,
)
from testbed.scenario.model import Impairment
from testbed.scenario.trace import Trace, TraceError, load_trace, parse_trace
from tests.helpers.stats import binomial_interval

MS = 1_000_000  # ns


def impairment(**data) -> Impairment:
    return Impairment.model_validate(data)


def udp(source="10.0.0.1", destination="10.0.0.2", sport=5000, dport=6000, payload=b"x" * 32, ihl=5) -> bytes:
    options = b"\x01" * (4 * (ihl - 5))  # NOPs
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x40 | ihl,
        0,
        4 * ihl + 8 + len(payload),
        0,
        0x4000,
        64,
        17,
        0,
        bytes(map(int, source.split("."))),
        bytes(map(int, destination.split("."))),
    )
    return header + options + struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


PACKET = udp()


def run(model: ImpairmentModel, n: int, spacing_ns: int = MS, packet: bytes = PACKET) -> list[Decision]:
    return [model.decide(i * spacing_ns, packet) for i in range(n)]


def delays_ms(decisions: list[Decision], spacing_ns: int = MS) -> np.ndarray:
    return np.array([d.release_ns - i * spacing_ns for i, d in enumerate(decisions)]) / MS


def drops(model: ImpairmentModel, n: int) -> np.ndarray:
    return np.array([d.drop for d in run(model, n)])


def bursts(lost: np.ndarray) -> np.ndarray:
    """Lengths of the runs of consecutive losses."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], lost.astype(int), [0]))))
    return edges[1::2] - edges[::2]


def netem_crandom(percent: float, n: int, seed: int) -> list[int]:
    """The kernel's get_crandom in u32 arithmetic (reference for the float implementation)."""
    rng = random.Random(seed)
    rho = round(percent / 100 * 0xFFFFFFFF) + 1
    last = rng.getrandbits(32)
    values = []
    for _ in range(n):
        last = (rng.getrandbits(32) * ((1 << 32) - rho) + last * rho) >> 32
        values.append(last)
    return values


# ---------------------------------------------------------------- delay and jitter


def test_normal_jitter_has_netem_median_and_spread():
    model = ImpairmentModel(impairment(delay="50ms", jitter="10ms"), np.random.default_rng(1), per_flow_order=False)
    delays = delays_ms(run(model, 20_000))
    assert abs(np.median(delays) - 50) <= 0.5
    assert abs(delays.std() - 10) <= 0.5
    assert delays.min() >= 50 - 4 * 10 - 0.01  # iproute2's normal table stops at 4 sigma


def test_per_flow_order_holds_packets_behind_their_flow():
    settings = impairment(delay="50ms", jitter="10ms", loss="20%")
    free = run(ImpairmentModel(settings, np.random.default_rng(7), per_flow_order=False), 20_000)
    ordered = run(ImpairmentModel(settings, np.random.default_rng(7)), 20_000)  # same draws, same seed
    assert [d.drop for d in free] == [d.drop for d in ordered]
    kept = [(f.release_ns, o.release_ns) for f, o in zip(free, ordered, strict=False) if not o.drop]
    sampled, released = np.array(kept).T
    assert np.all(released >= sampled)
    assert np.all(np.diff(released) >= 0)  # one flow: never reordered
    assert np.any(np.diff(sampled) < 0)  # netem's own times would have reordered it
    # release = max(own time, flow's last release): a dropped packet does not move the flow
    assert np.array_equal(released, np.maximum.accumulate(sampled))


def test_flows_are_held_independently():
    model = ImpairmentModel(impairment(delay="50ms", jitter="20ms"), np.random.default_rng(3))
    a, b = udp(sport=1000), udp(sport=2000)
    releases: dict[bytes, list[int]] = {a: [], b: []}
    for i in range(4000):
        packet = a if i % 2 else b
        releases[packet].append(model.decide(i * MS, packet).release_ns)
    merged = [release for pair in zip(releases[b], releases[a], strict=False) for release in pair]
    assert all(np.all(np.diff(times) >= 0) for times in releases.values())
    assert np.any(np.diff(merged) < 0)  # across flows, jitter still reorders


def test_uniform_jitter_is_flat_between_mu_minus_and_plus_sigma():
    model = ImpairmentModel(
        impairment(delay="50ms", jitter="10ms", jitter_distribution="uniform"),
        np.random.default_rng(2),
        per_flow_order=False,
    )
    delays = delays_ms(run(model, 20_000))
    assert 40 <= delays.min() < 40.1 and 59.9 < delays.max() <= 60
    assert abs(delays.mean() - 50) < 0.15
    assert np.allclose(np.percentile(delays, [25, 50, 75]), [45, 50, 55], atol=0.3)


def test_pareto_jitter_follows_iproute2s_table():
    # pareto.c: shape 3 quantile x = (1-q)^(-1/3), centred on its mean 1.5, scaled by 4/3, clipped at 4 sigma
    model = ImpairmentModel(
        impairment(delay="50ms", jitter="10ms", jitter_distribution="pareto"),
        np.random.default_rng(4),
        per_flow_order=False,
    )
    delays = delays_ms(run(model, 20_000))
    median = 50 + 10 * (2 ** (1 / 3) - 1.5) * 4 / 3  # 46.8 ms: the long tail is above
    assert abs(np.median(delays) - median) < 0.25
    assert delays.min() >= 50 - 10 * 2 / 3 - 0.01 and delays.max() <= 50 + 40.01
    assert abs(delays.mean() - 50) < 0.6  # the table is centred on the mean (less its clipped tail)
    assert abs(np.mean(delays < 44) - (1 - 1.05**-3)) < 0.01  # 44 ms is pareto's x = 1.05
    assert abs(np.mean(delays > 70) - 3.0**-3) < 0.004  # beyond mu + 2 sigma: x > 3


def test_paretonormal_is_a_quarter_normal_three_quarters_pareto():
    model = ImpairmentModel(
        impairment(delay="50ms", jitter="10ms", jitter_distribution="paretonormal"),
        np.random.default_rng(5),
        per_flow_order=False,
    )
    delays = delays_ms(run(model, 20_000))
    median = 50 + 10 * (0 + 3 * (2 ** (1 / 3) - 1.5) * 4 / 3) / 4  # both parts at their medians
    assert abs(np.median(delays) - median) < 0.25
    assert abs(delays.mean() - 50) < 0.6


def test_delay_correlation_does_what_netems_u32_arithmetic_does():
    # netem correlates the u32 random number, then looks up table[rnd % 4096]: the low bits it uses
    # stay random, so the kernel's delays are neither correlated nor narrower. Same here.
    n = 50_000
    model = ImpairmentModel(
        impairment(delay="50ms", jitter="10ms", delay_correlation="50%"), np.random.default_rng(6), per_flow_order=False
    )
    delays = delays_ms(run(model, n))
    table = distribution_table("normal")
    reference = np.array([50 + 10 * table[value % len(table)] / DIST_SCALE for value in netem_crandom(50, n, 6)])
    assert abs(delays.std() - reference.std()) < 0.15 and abs(delays.std() - 10) < 0.2
    assert abs(np.corrcoef(delays[:-1], delays[1:])[0, 1]) < 0.02
    assert abs(np.corrcoef(reference[:-1], reference[1:])[0, 1]) < 0.02
    frozen = ImpairmentModel(
        impairment(delay="50ms", jitter="10ms", delay_correlation="100%"),
        np.random.default_rng(6),
        per_flow_order=False,
    )
    assert len(set(delays_ms(run(frozen, 100)))) == 1  # rho = 1: always the first number


def test_negative_delays_release_at_arrival():
    # pareto may go below mu - sigma*0.67; with jitter > 1.5 * delay some samples are negative
    model = ImpairmentModel(
        impairment(delay="10ms", jitter="30ms", jitter_distribution="pareto"),
        np.random.default_rng(8),
        per_flow_order=False,
    )
    delays = delays_ms(run(model, 5000))
    assert delays.min() == 0 and np.mean(delays == 0) > 0.1


# ---------------------------------------------------------------- distribution tables


@pytest.mark.parametrize("name", ["normal", "pareto", "paretonormal"])
def test_computed_tables_match_the_installed_ones(name):
    installed = [Path(d) / f"{name}.dist" for d in TC_LIB_DIRS if (Path(d) / f"{name}.dist").is_file()]
    if not installed:
        pytest.skip("iproute2's distribution tables are not installed here")
    assert len(computed_table(name)) == len(read_dist_file(installed[0])) == 4096
    assert np.abs(np.array(computed_table(name)) - np.array(read_dist_file(installed[0]))).max() <= 1


def test_dist_file_errors_name_the_line(tmp_path):
    bad = tmp_path / "bad.dist"
    bad.write_text("# comment\n 1 2 3\n 4 x 6\n")
    with pytest.raises(InputError, match=r"bad.dist:3: 'x' is not an integer"):
        read_dist_file(bad)
    bad.write_text("40000\n")
    with pytest.raises(InputError, match=r"outside -32768..32767"):
        read_dist_file(bad)


# ---------------------------------------------------------------- loss


def test_random_loss_is_inside_the_binomial_interval():
    lost = drops(ImpairmentModel(impairment(loss="5%"), np.random.default_rng(11)), 20_000)
    low, high = binomial_interval(20_000, 0.05, level=0.99)
    assert low <= lost.sum() <= high
    assert np.mean(bursts(lost)) < 1.1  # independent: bursts of 1/(1-p)


def test_correlated_random_loss_is_burstier_at_netems_lower_rate():
    n = 100_000
    lost = drops(ImpairmentModel(impairment(loss={"rate": "30%", "correlation": "50%"}), np.random.default_rng(12)), n)
    threshold = round(0.30 * 0xFFFFFFFF)
    netem = np.array([threshold >= value for value in netem_crandom(50, n, 12)])
    # netem's known behaviour: correlating the uniform number pulls it to 0.5, so 30% loses ~13%
    assert abs(lost.mean() - netem.mean()) < 0.006 and 0.11 < lost.mean() < 0.15
    independent = drops(ImpairmentModel(impairment(loss=f"{100 * lost.mean():.3f}%"), np.random.default_rng(13)), n)
    assert np.mean(bursts(lost)) > 1.3 * np.mean(bursts(independent))
    assert abs(np.mean(bursts(lost)) - np.mean(bursts(netem))) < 0.05


def test_small_correlated_loss_nearly_vanishes_as_in_netem():
    lost = drops(
        ImpairmentModel(impairment(loss={"rate": "5%", "correlation": "25%"}), np.random.default_rng(14)), 100_000
    )
    netem = np.array([round(0.05 * 0xFFFFFFFF) >= v for v in netem_crandom(25, 100_000, 14)])
    assert lost.mean() < 0.005 and abs(lost.mean() - netem.mean()) < 0.001


def test_gilbert_elliott_bursts_last_one_over_r():
    p, r = 0.02, 0.25
    model = ImpairmentModel(
        impairment(loss={"model": "gilbert_elliott", "p": "2%", "r": "25%"}), np.random.default_rng(21)
    )
    lost = drops(model, 300_000)
    assert abs(np.mean(bursts(lost)) - 1 / r) <= 0.05 / r
    assert abs(lost.mean() - p / (p + r)) < 0.004


def test_gilbert_elliott_with_loss_in_both_states():
    p, r, loss_bad, loss_good = 0.05, 0.2, 0.6, 0.01
    model = ImpairmentModel(
        impairment(loss={"model": "gilbert_elliott", "p": "5%", "r": "20%", "loss_bad": "60%", "loss_good": "1%"}),
        np.random.default_rng(22),
    )
    expected = (r * loss_good + p * loss_bad) / (p + r)
    assert abs(drops(model, 200_000).mean() - expected) < 0.006


def four_state_loss(p13, p31, p32, p23, p14) -> float:
    """Stationary probability of the loss states (3 and 4) of the GI 4-state chain."""
    matrix = np.array([[1 - p13 - p14, 0, p13, p14], [0, 1 - p23, p23, 0], [p31, p32, 1 - p31 - p32, 0], [1, 0, 0, 0]])
    system = np.vstack([matrix.T - np.eye(4), np.ones(4)])
    pi = np.linalg.lstsq(system, np.array([0, 0, 0, 0, 1.0]), rcond=None)[0]
    return float(pi[2] + pi[3])


@pytest.mark.parametrize(
    "p13, p31, p32, p23, p14",
    [
        (0.02, 0.40, 0.10, 0.50, 0.01),
        (0.05, 0.30, 0.00, 1.00, 0.00),  # the scenario defaults: a simple Gilbert model
        (0.01, 0.20, 0.30, 0.10, 0.03),
    ],
)
def test_four_state_matches_the_stationary_distribution(p13, p31, p32, p23, p14):
    loss = {
        "model": "four_state",
        "p13": f"{100 * p13}%",
        "p31": f"{100 * p31}%",
        "p32": f"{100 * p32}%",
        "p23": f"{100 * p23}%",
        "p14": f"{100 * p14}%",
    }
    lost = drops(ImpairmentModel(impairment(loss=loss), np.random.default_rng(31)), 300_000)
    expected = four_state_loss(p13, p31, p32, p23, p14)
    assert abs(lost.mean() - expected) <= 0.06 * expected


def test_four_state_without_bursts_is_isolated_loss():
    lost = drops(
        ImpairmentModel(
            impairment(loss={"model": "four_state", "p13": "0%", "p31": "100%", "p14": "10%"}),
            np.random.default_rng(32),
        ),
        50_000,
    )
    assert bursts(lost).max() == 1  # state 4 always returns to 1
    assert abs(lost.mean() - 0.1 / 1.1) < 0.01


# ---------------------------------------------------------------- duplicate, corrupt, reorder


def test_duplicates_get_their_own_delay_and_are_never_duplicated_again():
    model = ImpairmentModel(
        impairment(delay="50ms", jitter="10ms", duplicate="5%"), np.random.default_rng(41), per_flow_order=False
    )
    decisions = run(model, 20_000)
    copies = [d.copy for d in decisions if d.duplicate]
    low, high = binomial_interval(20_000, 0.05, level=0.99)
    assert low <= len(copies) <= high
    assert all(c is not None and not c.drop and not c.duplicate and c.copy is None for c in copies)
    assert all(d.copy is None for d in decisions if not d.duplicate)
    own = [d.copy.release_ns != d.release_ns for d in decisions if d.copy is not None]
    assert sum(own) > 0.95 * len(own)


def test_duplicated_copy_keeps_flow_order():
    model = ImpairmentModel(impairment(delay="50ms", jitter="10ms", duplicate="50%"), np.random.default_rng(42))
    times = []
    for decision in run(model, 2000):
        times += [decision.copy.release_ns] if decision.copy else []
        times.append(decision.release_ns)
    assert np.all(np.diff(times) >= 0)


def test_loss_and_duplicate_together_let_exactly_one_packet_through():
    # netem: count = 1 + duplicate - lost; a lost duplicated packet goes on once
    decisions = run(ImpairmentModel(impairment(loss="100%", duplicate="100%"), np.random.default_rng(43)), 1000)
    assert not any(d.drop or d.duplicate for d in decisions)


def test_duplicated_packets_and_their_copies_each_face_the_loss():
    # netem draws the original's loss (lost + duplicated = one packet on), then the copy's own loss
    decisions = run(ImpairmentModel(impairment(loss="50%", duplicate="100%"), np.random.default_rng(48)), 20_000)
    low, high = binomial_interval(20_000, 0.25, level=0.99)
    assert not any(d.drop for d in decisions)
    assert low <= sum(d.duplicate for d in decisions) <= high


def test_corrupt_rate_is_inside_the_binomial_interval():
    decisions = run(ImpairmentModel(impairment(corrupt="2%"), np.random.default_rng(44)), 20_000)
    low, high = binomial_interval(20_000, 0.02, level=0.99)
    assert low <= sum(d.corrupt for d in decisions) <= high


def test_reorder_sends_some_packets_at_once_ahead_of_their_flow():
    model = ImpairmentModel(impairment(delay="50ms", reorder="10%"), np.random.default_rng(45))
    delays = delays_ms(run(model, 20_000, spacing_ns=MS // 10), spacing_ns=MS // 10)
    low, high = binomial_interval(20_000, 0.10, level=0.99)
    assert low <= np.sum(delays == 0) <= high
    assert set(np.unique(delays)) == {0.0, 50.0}


def test_reorder_correlation_groups_the_reordered_packets():
    model = ImpairmentModel(
        impairment(delay="50ms", reorder="50%", reorder_correlation="75%"), np.random.default_rng(46)
    )
    at_once = delays_ms(run(model, 20_000)) == 0
    assert abs(at_once.mean() - 0.5) < 0.03
    assert np.mean(bursts(at_once)) > 3  # independent 50% would give 2


@given(st.binary(min_size=1, max_size=200), st.integers(0, 2**32 - 1))
def test_corrupt_payload_flips_exactly_one_bit(payload, seed):
    for rng in (np.random.default_rng(seed), random.Random(seed)):
        corrupted = corrupt_payload(payload, rng)
        assert len(corrupted) == len(payload)
        assert sum(bin(a ^ b).count("1") for a, b in zip(payload, corrupted, strict=False)) == 1


def test_corrupt_payload_reaches_every_bit_and_leaves_empty_alone():
    rng = np.random.default_rng(47)
    flipped = {int.from_bytes(corrupt_payload(b"\0\0\0", rng), "big").bit_length() for _ in range(3000)}
    assert flipped == set(range(1, 25))
    assert corrupt_payload(b"", rng) == b""


# ---------------------------------------------------------------- flow keys


def test_flow_key_of_udp_tcp_options_icmp_fragments_and_ipv6():
    assert flow_key(udp()) == (17, bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]), 5000, 6000)
    assert flow_key(udp(ihl=7)) == flow_key(udp())  # ports found after IP options
    tcp = bytearray(udp())
    tcp[9] = 6
    assert flow_key(bytes(tcp))[0] == 6 and flow_key(bytes(tcp))[3:] == (5000, 6000)
    icmp = bytearray(udp())
    icmp[9] = 1
    assert flow_key(bytes(icmp)) == (1, bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]))
    fragment = bytearray(udp())
    fragment[6] = 0x20  # more fragments: the datagram's pieces share a key without ports
    assert flow_key(bytes(fragment)) == (17, bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]))
    ipv6 = (
        bytes([0x60, 0, 0, 0, 0, 16, 17, 64])
        + bytes(range(16))
        + bytes(range(16, 32))
        + struct.pack("!HHHH", 5004, 5006, 16, 0)
        + b"x" * 8
    )
    assert flow_key(ipv6) == (17, bytes(range(16)), bytes(range(16, 32)), 5004, 5006)
    assert flow_key(b"\x45short") == () and flow_key(b"") == ()


@given(st.binary(max_size=80))
def test_flow_key_never_fails(packet):
    assert isinstance(flow_key(packet), tuple)


# ---------------------------------------------------------------- reproducibility


def test_same_seed_same_decisions_with_numpy_or_random():
    settings = impairment(delay="20ms", jitter="5ms", loss="10%", duplicate="5%", corrupt="5%")
    for make in (np.random.default_rng, random.Random):
        assert run(ImpairmentModel(settings, make(5)), 5000) == run(ImpairmentModel(settings, make(5)), 5000)
    assert run(ImpairmentModel(settings, random.Random(5)), 5000) != run(
        ImpairmentModel(settings, random.Random(6)), 5000
    )
    with pytest.raises(TypeError, match="numpy.random.Generator or random.Random"):
        ImpairmentModel(settings, 5)  # type: ignore[arg-type]


def test_no_impairment_releases_at_arrival():
    decisions = run(ImpairmentModel(impairment(), np.random.default_rng(0)), 100)
    assert all(d == Decision(False, i * MS, False, False) for i, d in enumerate(decisions))


# ---------------------------------------------------------------- traces


TRACE = """\
# a measured path
time_s,delay_ms,jitter_ms,loss_pct
0,20,0,0
10,80,0,100

25.5,40,5,0
"""


def test_trace_step_lookup(tmp_path):
    path = tmp_path / "path.csv"
    path.write_text(TRACE)
    trace = load_trace(path)
    assert [row.delay_ms for row in trace.rows] == [20, 80, 40]
    assert trace.at(0).delay_ms == 20 and trace.at(9.999).delay_ms == 20
    assert trace.at(10).delay_ms == 80 and trace.at(25.4).loss_pct == 100
    assert trace.at(25.5).jitter_ms == 5 and trace.at(1e6).delay_ms == 40


def test_trace_before_its_first_row_uses_the_first_row():
    trace = parse_trace("time_s,delay_ms\n5,30\n6,60\n")
    assert trace.at(0).delay_ms == 30 and trace.at(5.5).jitter_ms is None


def test_model_follows_the_trace_from_its_start():
    trace = parse_trace(TRACE)
    start = 1_000 * MS
    model = ImpairmentModel(
        impairment(delay="1ms"), np.random.default_rng(51), trace=trace, start_ns=start, per_flow_order=False
    )
    first = model.decide(start + 5 * 10**9, PACKET)
    assert first == Decision(False, start + 5 * 10**9 + 20 * MS, False, False)
    assert all(model.decide(start + t * MS, PACKET).drop for t in range(10_000, 25_500, 50))
    later = [model.decide(start + t * MS, PACKET) for t in range(25_500, 45_500)]
    jitter = (
        np.array([d.release_ns - (start + t * MS) for d, t in zip(later, range(25_500, 45_500), strict=False)]) / MS
    )
    assert not any(d.drop for d in later)
    assert abs(np.median(jitter) - 40) < 0.3 and abs(jitter.std() - 5) < 0.3  # jitter is normal


def test_trace_without_loss_column_keeps_the_scenarios_loss_model():
    trace = parse_trace("time_s,delay_ms\n0,10\n")
    model = ImpairmentModel(impairment(loss="50%"), np.random.default_rng(52), trace=trace)
    lost = drops(model, 10_000)
    assert 0.45 < lost.mean() < 0.55


@pytest.mark.parametrize(
    "text, message",
    [
        ("", r"t.csv: empty; the first line must be the header time_s, delay_ms, jitter_ms, loss_pct"),
        ("time_s,delay_ms\n", r"t.csv: no data rows after the header"),
        ("time_s,delay,loss_pct\n0,1,2\n", r"t.csv:1: unknown column 'delay'; allowed: time_s, delay_ms"),
        ("time_s,loss_pct\n0,1\n", r"t.csv:1: the header lacks delay_ms"),
        ("time_s,delay_ms,delay_ms\n0,1,1\n", r"t.csv:1: a column appears twice"),
        ("time_s,delay_ms\n0,10\n1,ten\n", r"t.csv:3: column delay_ms: 'ten' is not a number; allowed: 0 to 60000"),
        (
            "time_s,delay_ms,loss_pct\n0,10,150\n",
            r"t.csv:2: column loss_pct: 150 is outside the allowed range: 0 to 100",
        ),
        ("time_s,delay_ms\n0,-1\n", r"t.csv:2: column delay_ms: -1 is outside the allowed range: 0 to 60000"),
        ("time_s,delay_ms\n-1,1\n", r"t.csv:2: column time_s: -1 is outside the allowed range: 0 or more"),
        ("time_s,delay_ms\n0,nan\n", r"t.csv:2: column delay_ms: nan is outside"),
        ("time_s,delay_ms\n0,1\n\n0,2\n", r"t.csv:4: column time_s: 0 does not come after 0; times must increase"),
        ("time_s,delay_ms\n0,1,2\n", r"t.csv:2: 3 values for 2 columns \(time_s, delay_ms\)"),
        ("time_s,delay_ms,jitter_ms\n0,10,20\n", r"t.csv:2: column jitter_ms: 20 is larger than delay_ms 10"),
    ],
)
def test_trace_errors_name_file_line_column_and_range(text, message):
    with pytest.raises(TraceError, match=message):
        parse_trace(text, "t.csv")


def test_trace_file_errors(tmp_path):
    with pytest.raises(TraceError, match=r"missing.csv: cannot read the trace"):
        load_trace(tmp_path / "missing.csv")
    binary = tmp_path / "b.csv"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(TraceError, match=r"b.csv: cannot read the trace: not UTF-8 text"):
        load_trace(binary)
    assert issubclass(TraceError, InputError)
    with pytest.raises(TraceError, match="no rows"):
        Trace("x", ())


@pytest.mark.parametrize(
    "data",
    [
        {"delay": "30ms", "jitter": "8ms", "jitter_distribution": "pareto", "duplicate": "2%", "reorder": "5%"},
        {"delay": "10ms", "loss": {"model": "gilbert_elliott", "p": "3%", "r": "30%", "loss_bad": "80%"}},
        {"delay": "5ms", "loss": {"model": "four_state", "p13": "2%", "p31": "60%", "p14": "1%"}, "corrupt": "1%"},
    ],
)
def test_the_engine_decides_the_same_from_the_harness_dump_as_from_the_model(data):
    """The harness hands the engine ``model_dump()`` and the engine reads it without pydantic: any unit
    or field read differently would change every decision."""
    import json

    from testbed.lab.engine.engine import impairment_fields

    validated = impairment(**data)
    dumped = impairment_fields(json.loads(json.dumps(validated.model_dump())))
    ours = run(ImpairmentModel(dumped, np.random.default_rng(7)), 3000, packet=PACKET)
    theirs = run(ImpairmentModel(validated, np.random.default_rng(7)), 3000, packet=PACKET)
    assert ours == theirs
    assert sum(d.drop for d in ours) or sum(d.duplicate for d in ours)  # the models did something


def test_the_engine_process_starts_without_pydantic():
    import subprocess
    import sys

    code = "import sys, testbed.lab.engine.engine; print(sorted({m.split('.')[0] for m in sys.modules} & {'pydantic'}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
