import pytest
from hypothesis import given
from hypothesis import strategies as st

from testbed import units


@pytest.mark.parametrize(
    "text, bits",
    [
        ("10mbit", 10_000_000),
        ("512kbit", 512_000),
        ("1gbit", 1_000_000_000),
        ("1.5Mbit", 1_500_000),
        ("10 mbit", 10_000_000),
        ("10mbps", 10_000_000),
        ("100kbit/s", 100_000),
        ("64000bit", 64_000),
    ],
)
def test_rates(text, bits):
    assert units.parse_rate(text) == bits


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("50ms", 0.05),
        ("500us", 0.0005),
        ("1.5s", 1.5),
        ("2min", 120),
        (0, 0.0),
        ("0ms", 0.0),
    ],
)
def test_durations(text, seconds):
    assert units.parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text, percent", [("1.5%", 1.5), ("0%", 0), ("100%", 100), (0, 0)])
def test_percentages(text, percent):
    assert units.parse_percent(text) == percent


@pytest.mark.parametrize(
    "parser, text, message",
    [
        (units.parse_rate, "10", "bare number is ambiguous"),
        (units.parse_rate, "10 megabits", "unknown unit 'megabits'"),
        (units.parse_rate, "-1mbit", "negative"),
        (units.parse_duration, 50, "bare number is ambiguous"),
        (units.parse_duration, "5 fortnights", "unknown unit"),
        (units.parse_percent, "150%", "more than 100%"),
        (units.parse_percent, 0.5, "with a % sign"),
        (units.parse_dscp, 64, "out of range"),
        (units.parse_dscp, "EX", "not a DSCP value"),
        (units.parse_size, "12 parsecs", "unknown unit"),
    ],
)
def test_errors_say_what_is_wrong(parser, text, message):
    with pytest.raises(ValueError, match=message):
        parser(text)


def test_dscp_names_and_numbers():
    assert units.parse_dscp("EF") == units.parse_dscp("ef") == units.parse_dscp(46) == units.parse_dscp("46") == 46
    assert units.parse_dscp("AF41") == 34 and units.parse_dscp("CS6") == 48 and units.parse_dscp("BE") == 0


@given(st.integers(min_value=8, max_value=10**11))
def test_rate_format_round_trips(bits):
    assert units.parse_rate(units.format_rate(bits)) == pytest.approx(bits, rel=1e-5)


@given(st.floats(min_value=1e-6, max_value=3600, allow_nan=False))
def test_duration_format_round_trips(seconds):
    assert units.parse_duration(units.format_duration(seconds)) == pytest.approx(seconds, rel=1e-5)
