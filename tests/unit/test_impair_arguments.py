"""The tc netem command line built from a link impairment (pure)."""

from testbed.lab.impair import burst_bytes, netem_arguments, netem_queue_limit
from testbed.scenario.model import Impairment


def impairment(**data) -> Impairment:
    return Impairment.model_validate(data)


def test_delay_with_normal_jitter_and_random_loss():
    args = netem_arguments(impairment(delay="50ms", jitter="10ms", loss="5%"), limit=1000)
    assert args == ["limit", "1000", "delay", "50000us", "10000us", "distribution", "normal", "loss", "random", "5%"]


def test_gilbert_elliott_and_four_state():
    ge = impairment(delay="1ms", loss={"model": "gilbert_elliott", "p": "1%", "r": "30%"})
    assert netem_arguments(ge, 10)[-6:] == ["loss", "gemodel", "1%", "30%", "100%", "0%"]
    four = impairment(delay="1ms", loss={"model": "four_state", "p13": "2%", "p31": "40%"})
    assert netem_arguments(four, 10)[-7:] == ["loss", "state", "2%", "40%", "0%", "100%", "0%"]


def test_reorder_duplicate_corrupt_and_correlations():
    args = netem_arguments(
        impairment(
            delay="10ms",
            jitter="2ms",
            delay_correlation="25%",
            reorder="5%",
            reorder_correlation="50%",
            duplicate="1%",
            corrupt="0.1%",
        ),
        50,
    )
    assert args == [
        "limit",
        "50",
        "delay",
        "10000us",
        "2000us",
        "25%",
        "distribution",
        "normal",
        "reorder",
        "5%",
        "50%",
        "duplicate",
        "1%",
        "corrupt",
        "0.1%",
    ]


def test_netem_queue_holds_the_delay_line():
    plain = netem_queue_limit(impairment(delay="100ms", queue_limit=100))
    shaped = netem_queue_limit(impairment(rate="10mbit", delay="100ms", queue_limit=100))
    assert plain == 100 and shaped > 100 + 10_000_000 / 8 / 1500 * 0.1


def test_burst_is_a_millisecond_plus_a_frame():
    assert burst_bytes(8_000_000) == 1000 + 1514


def test_uniform_jitter_is_netems_default_without_a_table():
    impairment = Impairment.model_validate({"delay": "50ms", "jitter": "10ms", "jitter_distribution": "uniform"})
    assert netem_arguments(impairment, 1000) == ["limit", "1000", "delay", "50000us", "10000us"]
