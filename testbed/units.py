"""Parse the units people write in scenario files: ``10mbit``, ``50ms``, ``1.5%``, ``1200B``, ``EF``.

Every parser raises ``ValueError`` with a message that shows the bad value and what is allowed, so the
scenario loader can put it on one line next to the file and field path.
"""

from __future__ import annotations

import re

_NUMBER = r"(?P<num>\d+(?:\.\d*)?|\.\d+)"

# Rates are bits per second. Unlike tc (where "mbps" means megabytes), "mbps" here means megabits,
# as ISPs and dialer vendors write it.
_RATE_UNITS = {
    "bit": 1,
    "bps": 1,
    "kbit": 1e3,
    "kbps": 1e3,
    "k": 1e3,
    "mbit": 1e6,
    "mbps": 1e6,
    "m": 1e6,
    "gbit": 1e9,
    "gbps": 1e9,
    "g": 1e9,
}
_DURATION_UNITS = {"us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "sec": 1.0, "min": 60.0}
_SIZE_UNITS = {"b": 1, "kb": 1000, "k": 1000, "kib": 1024, "mb": 1_000_000, "mib": 1 << 20}

RATE_EXAMPLES = "e.g. 512kbit, 10mbit, 1gbit"
DURATION_EXAMPLES = "e.g. 500us, 20ms, 1.5s, 2min"
PERCENT_EXAMPLES = "e.g. 0.5%, 25%"
SIZE_EXAMPLES = "e.g. 1200B, 64kb, 1mib"

DSCP_NAMES: dict[str, int] = {
    "BE": 0,
    "DF": 0,
    "CS0": 0,
    "CS1": 8,
    "AF11": 10,
    "AF12": 12,
    "AF13": 14,
    "CS2": 16,
    "AF21": 18,
    "AF22": 20,
    "AF23": 22,
    "CS3": 24,
    "AF31": 26,
    "AF32": 28,
    "AF33": 30,
    "CS4": 32,
    "AF41": 34,
    "AF42": 36,
    "AF43": 38,
    "CS5": 40,
    "VA": 44,
    "EF": 46,
    "CS6": 48,
    "CS7": 56,
}


def _split(text: object, what: str, examples: str) -> tuple[float, str]:
    if isinstance(text, bool) or not isinstance(text, (str, int, float)):
        raise ValueError(f"{text!r} is not a {what}; write it with a unit, {examples}")
    if str(text).strip().startswith("-"):
        raise ValueError(f"{text!r} is negative; a {what} must be positive, {examples}")
    match = re.fullmatch(_NUMBER + r"\s*(?P<unit>[a-zA-Zµ%/]*)", str(text).strip())
    if not match:
        raise ValueError(f"{text!r} is not a {what}; write it with a unit, {examples}")
    return float(match["num"]), match["unit"]


def parse_rate(text: object) -> int:
    """``10mbit`` -> 10_000_000 (bits per second)."""
    number, unit = _split(text, "rate", RATE_EXAMPLES)
    unit = unit.lower().removesuffix("/s")
    if unit not in _RATE_UNITS:
        hint = " (a bare number is ambiguous)" if unit == "" else f" (unknown unit {unit!r})"
        raise ValueError(f"{text!r} is not a rate{hint}; use bit, kbit, mbit or gbit, {RATE_EXAMPLES}")
    bits = number * _RATE_UNITS[unit]
    if bits < 8:
        raise ValueError(f"{text!r} is too small a rate; the minimum is 8bit")
    if bits > 100e9:
        raise ValueError(f"{text!r} is too large a rate; the maximum is 100gbit")
    return int(round(bits))


def parse_duration(text: object) -> float:
    """``50ms`` -> 0.05 (seconds). A bare ``0`` is accepted."""
    if text == 0 and not isinstance(text, bool):
        return 0.0
    number, unit = _split(text, "duration", DURATION_EXAMPLES)
    unit = unit.lower()
    if unit not in _DURATION_UNITS:
        hint = " (a bare number is ambiguous)" if unit == "" else f" (unknown unit {unit!r})"
        raise ValueError(f"{text!r} is not a duration{hint}; use us, ms, s or min, {DURATION_EXAMPLES}")
    return number * _DURATION_UNITS[unit]


def parse_percent(text: object) -> float:
    """``1.5%`` -> 1.5 (percent, 0..100). A bare ``0`` is accepted; other bare numbers are ambiguous."""
    if text == 0 and not isinstance(text, bool):
        return 0.0
    number, unit = _split(text, "percentage", PERCENT_EXAMPLES)
    if unit != "%":
        raise ValueError(f"{text!r} is not a percentage; write it with a % sign, {PERCENT_EXAMPLES}")
    if number > 100:
        raise ValueError(f"{text!r} is more than 100%; allowed: 0% to 100%")
    return number


def parse_size(text: object) -> int:
    """``1200B`` or ``1200`` -> 1200 (bytes)."""
    if isinstance(text, int) and not isinstance(text, bool):
        if text < 0:
            raise ValueError(f"{text!r} is negative; a size is at least 0 bytes")
        return text
    number, unit = _split(text, "size", SIZE_EXAMPLES)
    unit = unit.lower() or "b"
    if unit not in _SIZE_UNITS:
        raise ValueError(f"{text!r} is not a size (unknown unit {unit!r}); {SIZE_EXAMPLES}")
    return int(round(number * _SIZE_UNITS[unit]))


def parse_dscp(value: object) -> int:
    """``EF`` / ``ef`` / ``46`` -> 46. Names follow RFC 4594 / RFC 2474 (CS0-CS7, AFxy, EF, VA)."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a DSCP value")
    if isinstance(value, int):
        if not 0 <= value <= 63:
            raise ValueError(f"DSCP {value} is out of range; allowed: 0 to 63 or a name such as EF, AF41, CS3")
        return value
    if isinstance(value, str):
        name = value.strip().upper()
        if name.isdigit():
            return parse_dscp(int(name))
        if name in DSCP_NAMES:
            return DSCP_NAMES[name]
    raise ValueError(f"{value!r} is not a DSCP value; use 0-63 or one of {', '.join(sorted(set(DSCP_NAMES)))}")


def format_rate(bits_per_second: float) -> str:
    """10_000_000 -> ``10mbit``; for display and for the ``tc`` command line."""
    for unit, scale in (("gbit", 1e9), ("mbit", 1e6), ("kbit", 1e3)):
        if bits_per_second >= scale and bits_per_second % scale == 0:
            return f"{int(bits_per_second // scale)}{unit}"
    for unit, scale in (("gbit", 1e9), ("mbit", 1e6), ("kbit", 1e3)):
        if bits_per_second >= scale:
            return f"{bits_per_second / scale:g}{unit}"
    return f"{int(bits_per_second)}bit"


def format_duration(seconds: float) -> str:
    """0.05 -> ``50ms``."""
    if seconds == 0:
        return "0"
    if seconds >= 1:
        return f"{seconds:g}s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:g}ms"
    return f"{seconds * 1e6:g}us"
