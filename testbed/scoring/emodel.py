"""The ITU-T E-model: transmission rating R and the MOS it implies, narrowband and wideband.

A *planning* estimate, as G.107 itself says: R predicts the conversational quality a typical user would
report for a connection with these parameters. It is not a measurement of the call; the PESQ score of the
played-out audio is the measurement.

Sources (formulas re-derived from the Recommendations' equations, not copied code):

Longer than the project's 400-line guide on purpose: every term of R is a small function that cites its
clause, and splitting one Recommendation's equations across files would make them harder to check.

- Narrowband: ITU-T G.107 (06/2015), clause 7. R = Ro - Is - Id - Ie,eff + A (7.1);
  Ro with the noise summation No (7.2); Is = Iolr + Ist + Iq (7.3); Id = Idte + Idle + Idd (7.4), Idd with the
  delay-sensitivity parameters mT = 100 ms and sT = 1 of the default class; Ie,eff (7.5); defaults from
  Table 3; R to MOS_CQE from Annex B.
- Wideband: ITU-T G.107.1 (06/2019), clause 7: Ro,WB = 129 and Is,WB = 0 (the 2019 text no longer models
  loudness, noise or sidetone); Id,WB = Idte,WB + Idle,WB + Idd,WB; Ie,eff,WB with the same constant 95 as the
  narrowband model; R to MOS via Annex A, which rescales to the narrowband range first, Rx = R / 1.29, and
  then applies the G.107 Annex B polynomial to Rx.

What we could not check against the Recommendations' own text (we worked from secondary transcriptions and
say so in the report; see also ``WIDEBAND_CAVEAT``):

- G.107.1's delay terms: talker echo Idte,WB (TERV plus a correction K = 0.08 T + 10 below 100 ms, 18 from
  100 ms; Re,WB = 80 + 3 (TERV - 14)), Roe from the G.107 noise summation with the G.107.1 default
  Nfor = -96 dBmp, Idle,WB = the G.107 formula with Ro,WB, and Idd,WB = 1.29 x Idd. G.107.1 has a corrigendum
  (01/2020) that replaced one of these equations; we could not see which way.
- G.107.1's Ie,eff,WB has no burst ratio; we use G.107's BurstR form for both scales (an extension, so bursty
  loss is not scored as random merely because the codec is wideband).

Things in the formulas that surprise people, kept as the Recommendation writes them:

- Annex B's polynomial dips below 1 for 0 < R < 6.52 (minimum about 0.989 at R = 3.2), so MOS is not
  monotonic in R there. MOS is not clamped to 1 in that range.
- Idte is slightly negative (about -0.1; -0.3 in the wideband form) for echo-path delays of 1 to a few ms
  (a 6 e^(-0.3 T^2) term in TERV), so R can rise by up to ~0.1 as T grows through that range. For T < 1 ms
  we set Idte = 0 (echo that early is heard as sidetone; G.107 clause 7.4, as we recall it).
- Ie,eff exceeds 95 (the formula's asymptote for random loss) when Ppl (1 - 1/BurstR) > Bpl, i.e. heavy
  bursty loss outside the range G.107 validated (Table 3: Ppl 0-20 %, BurstR 1-8, and BurstR > 2 only for
  Ppl < 2 %). Kept, and flagged in ``warnings``.

Echo paths of a real call (:func:`call_inputs`): a WebRTC softphone has acoustic echo cancellation, and the
talker-echo path is modelled with the G.107 default TELR = 65 dB (well-controlled echo), T = Ta (the echo of
the talker's voice returns from the far terminal, so the mean one-way delay of the echo path equals the
mouth-to-ear delay) and Tr = 2 Ta (listener echo: the round trip of the 4-wire loop between the terminals),
WEPL at its default 110 dB. With TELR 65 the echo terms cost little at typical delays but are not zero.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from testbed.codecs import Codec, EModelParams
from testbed.codecs import emodel_params as lookup_codec
from testbed.errors import InputError

__all__ = [
    "PLANNING_NOTE",
    "RO_WB",
    "WB_SCALE",
    "WIDEBAND_CAVEAT",
    "EModelInput",
    "EModelResult",
    "absolute_delay_ms",
    "call_inputs",
    "ie_eff",
    "mos_from_r",
    "r_factor",
    "rating",
]

PLANNING_NOTE = (
    "E-model (ITU-T G.107 / G.107.1) planning estimate of conversational quality from network "
    "and codec parameters; not a measurement of the audio"
)
WIDEBAND_CAVEAT = (
    "wideband delay/echo terms (Idte,WB, Idle,WB, Idd,WB) follow G.107.1 (06/2019) as "
    "transcribed by secondary sources, not checked against the Recommendation text"
)

RO_WB = 129.0  # G.107.1: basic signal-to-noise ratio of the wideband scale
WB_SCALE = 1.29  # G.107.1 Annex A: R_WB / 1.29 maps onto the narrowband MOS polynomial; also Idd,WB factor
NFOR_NB = -64.0  # G.107 Table 3
NFOR_WB = -96.0  # G.107.1 Table 1 (used only for Roe in the wideband talker-echo term)
IE_EFF_MAX = 95.0  # G.107 eq. for Ie,eff (and G.107.1): asymptote for random loss


@dataclass(frozen=True)
class EModelInput:
    """All E-model parameters, defaulting to G.107 Table 3. Delays in ms, losses in percent.

    ``ta``: absolute (mouth-to-ear) one-way delay; ``t``: mean one-way delay of the talker-echo path;
    ``tr``: round-trip delay of the 4-wire loop (listener echo). ``ppl``: packet loss in percent (0-100) as
    the *receiver* experiences it (lost plus arrived too late for playout). ``burst_r``: 1 = random loss,
    > 1 bursty. ``mt``/``st``: G.107's delay-sensitivity class (defaults: carrier/enterprise telephony).
    ``nfor``: None means the model's default (-64 dBmp narrowband, -96 dBmp wideband).
    ``lstr``: G.107 defines LSTR = STMR + Dr; ``dr`` is kept for the record and checked against it.
    ``wideband``: score on the G.107.1 scale; ``ie``/``bpl`` must then be wideband values (Ie,wb).
    On the wideband path (G.107.1 (06/2019) models no loudness, noise or sidetone) Ta, T, Tr, TELR, WEPL, Ie,
    Bpl, Ppl, BurstR and A act directly; SLR, RLR, Ds, LSTR, Nc, Ps, Pr and Nfor only through the noise No in
    Roe of the talker-echo term; STMR, Dr and qdu are unused.
    """

    slr: float = 8.0
    rlr: float = 2.0
    stmr: float = 15.0
    lstr: float = 18.0
    ds: float = 3.0
    dr: float = 3.0
    telr: float = 65.0
    wepl: float = 110.0
    t: float = 0.0
    tr: float = 0.0
    ta: float = 0.0
    qdu: float = 1.0
    ie: float = 0.0
    bpl: float = 1.0
    ppl: float = 0.0
    burst_r: float = 1.0
    nc: float = -70.0
    nfor: float | None = None
    ps: float = 35.0
    pr: float = 35.0
    a: float = 0.0
    mt: float = 100.0
    st: float = 1.0
    wideband: bool = False

    def with_(self, **changes: Any) -> EModelInput:
        return replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class EModelResult:
    """R, MOS and every term of R = Ro - Is - Id - Ie,eff + A, so a score can be attributed."""

    r: float
    mos: float
    wideband: bool
    ro: float
    is_: float
    iolr: float
    ist: float
    iq: float
    id: float
    idte: float
    idle: float
    idd: float
    ie_eff: float
    a: float
    no: float  # total noise power No (dBm0p) used for Ro / Roe
    inputs: EModelInput
    warnings: tuple[str, ...] = ()
    note: str = field(default=PLANNING_NOTE)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["is"] = d.pop("is_")
        return d


# ---------------------------------------------------------------- narrowband terms (G.107 clause 7)


def _lg(x: float) -> float:
    return math.log10(x)


def _root(value: float, n: float) -> float:
    """Real n-th root keeping the sign (the Ist formula has odd powers of possibly negative numbers)."""
    return math.copysign(abs(value) ** (1.0 / n), value)


def _noise(p: EModelInput, nfor: float) -> float:
    """No: power sum of circuit noise Nc, send/receive room noise equivalents Nos/Nor and noise floor Nfo."""
    olr = p.slr + p.rlr
    nos = p.ps - p.slr - p.ds - 100.0 + 0.004 * (p.ps - olr - p.ds - 14.0) ** 2
    pre = p.pr + 10.0 * _lg(1.0 + 10.0 ** ((10.0 - p.lstr) / 10.0))
    nor = p.rlr - 121.0 + pre + 0.008 * (pre - 35.0) ** 2
    nfo = nfor + p.rlr
    return 10.0 * _lg(10.0 ** (p.nc / 10.0) + 10.0 ** (nos / 10.0) + 10.0 ** (nor / 10.0) + 10.0 ** (nfo / 10.0))


def _iolr(p: EModelInput, no: float) -> float:
    xolr = p.slr + p.rlr + 0.2 * (64.0 + no - p.rlr)
    return 20.0 * (_root(1.0 + (xolr / 8.0) ** 8, 8) - xolr / 8.0)


def _ist(p: EModelInput) -> float:
    stmro = -10.0 * _lg(10.0 ** (-p.stmr / 10.0) + math.exp(-p.t / 4.0) * 10.0 ** (-p.telr / 10.0))
    return (
        12.0 * _root(1.0 + ((stmro - 13.0) / 6.0) ** 8, 8)
        - 28.0 * _root(1.0 + ((stmro + 1.0) / 19.4) ** 35, 35)
        - 13.0 * _root(1.0 + ((stmro - 3.0) / 33.0) ** 13, 13)
        + 29.0
    )


def _iq(p: EModelInput, ro: float) -> float:
    q = 37.0 - 15.0 * _lg(p.qdu)
    g = 1.07 + 0.258 * q + 0.0602 * q * q
    y = (ro - 100.0) / 15.0 + 46.0 / 8.4 - g / 9.0
    z = 46.0 / 30.0 - g / 40.0
    return 15.0 * _lg(1.0 + 10.0**y + 10.0**z)


def _echo_bracket(roe_minus_re: float, t: float) -> float:
    d = roe_minus_re
    return (d / 2.0 + math.sqrt(d * d / 4.0 + 100.0) - 1.0) * (1.0 - math.exp(-t))


def _terv_delay(t: float) -> float:
    return -40.0 * _lg((1.0 + t / 10.0) / (1.0 + t / 150.0)) + 6.0 * math.exp(-0.3 * t * t)


def _idte(p: EModelInput, no: float, ist: float) -> float:
    if p.t < 1.0:  # G.107: below 1 ms the echo is perceived as sidetone
        return 0.0
    roe = -1.5 * (no - p.rlr)
    terv = p.telr + _terv_delay(p.t)
    if p.stmr < 9.0:  # low sidetone masks less: TERVs = TERV + Ist / 2
        terv += ist / 2.0
    re = 80.0 + 2.5 * (terv - 14.0)
    idte = _echo_bracket(roe - re, p.t)
    if p.stmr > 20.0:  # high sidetone: Idtes = sqrt(Idte^2 + Ist^2)
        idte = math.sqrt(idte * idte + ist * ist)
    return idte


def _idle(ro: float, p: EModelInput) -> float:
    rle = 10.5 * (p.wepl + 7.0) * (p.tr + 1.0) ** -0.25
    d = ro - rle
    return float(d / 2.0 + math.sqrt(d * d / 4.0 + 169.0))


def _idd(p: EModelInput) -> float:
    if p.ta <= p.mt:
        return 0.0
    x = _lg(p.ta / p.mt) / _lg(2.0)
    e = 6.0 * p.st
    return float(25.0 * ((1.0 + x**e) ** (1.0 / e) - 3.0 * (1.0 + (x / 3.0) ** e) ** (1.0 / e) + 2.0))


def _idte_wb(p: EModelInput, no: float) -> float:
    if p.t < 1.0:
        return 0.0
    roe = -1.5 * (no - p.rlr)
    k = 0.08 * p.t + 10.0 if p.t < 100.0 else 18.0
    terv = p.telr + k + _terv_delay(p.t)
    re = 80.0 + 3.0 * (terv - 14.0)
    return _echo_bracket(roe - re, p.t)


def ie_eff(ie: float, ppl: float, bpl: float, burst_r: float = 1.0) -> float:
    """Effective equipment impairment: Ie + (95 - Ie) * Ppl / (Ppl / BurstR + Bpl), Ppl in percent."""
    if ppl <= 0.0:
        return ie
    return ie + (IE_EFF_MAX - ie) * ppl / (ppl / burst_r + bpl)


# ---------------------------------------------------------------- R -> MOS


def mos_from_r(r: float, wideband: bool = False) -> float:
    """MOS_CQE from R: G.107 Annex B (narrowband) or G.107.1 Annex A (wideband: the same polynomial of R/1.29).

    1 for R < 0, 4.5 for R > 100, else 1 + 0.035 R + R (R - 60) (100 - R) 7e-6. Not clamped inside [0, 100]:
    the polynomial dips to about 0.989 near R = 3.2, as the Recommendation writes it.
    """
    if math.isnan(r):
        raise InputError("R is NaN: an E-model input was not a number")
    x = r / WB_SCALE if wideband else r
    if x < 0.0:
        return 1.0
    if x > 100.0:
        return 4.5
    return 1.0 + 0.035 * x + x * (x - 60.0) * (100.0 - x) * 7e-6


# ---------------------------------------------------------------- the model


def _check(p: EModelInput) -> list[str]:
    """Refuse inputs the formulas cannot take; return warnings for values outside G.107's validated ranges."""
    for name, value in vars(p).items():  # not as_dict(): its deep copy costs more than the whole check
        if isinstance(value, float) and not math.isfinite(value):
            raise InputError(f"E-model input {name} = {value} is not a finite number")
    for name in ("ta", "t", "tr"):
        if getattr(p, name) < 0:
            raise InputError(f"E-model delay {name} = {getattr(p, name)} ms is negative")
    if not 0.0 <= p.ppl <= 100.0:
        raise InputError(f"E-model packet loss Ppl = {p.ppl} is not a percentage in 0..100")
    if p.burst_r <= 0:
        raise InputError(f"E-model burst ratio BurstR = {p.burst_r} must be positive (1 = random loss)")
    if p.bpl <= 0:
        raise InputError(f"E-model packet-loss robustness Bpl = {p.bpl} must be positive")
    if p.qdu <= 0 or p.mt <= 0 or p.st <= 0:
        raise InputError("E-model qdu, mT and sT must be positive")
    warnings = []
    for name, value, low, high in (
        ("Ta", p.ta, 0, 500),
        ("T", p.t, 0, 500),
        ("Tr", p.tr, 0, 1000),
        ("Ppl", p.ppl, 0, 20),
        ("BurstR", p.burst_r, 1, 8),
        ("A", p.a, 0, 20),
    ):
        if not low <= value <= high:
            warnings.append(f"{name} = {value:g} is outside G.107 Table 3's range {low}..{high}: extrapolated")
    if p.burst_r > 2 and p.ppl >= 2:
        warnings.append(
            f"BurstR = {p.burst_r:g} > 2 with Ppl = {p.ppl:g} % >= 2 %: G.107 validates BurstR > 2 only for Ppl < 2 %"
        )
    if not p.wideband and abs(p.lstr - (p.stmr + p.dr)) > 1e-9:
        warnings.append(f"LSTR = {p.lstr:g} differs from STMR + Dr = {p.stmr + p.dr:g}; LSTR is used")
    if p.wideband:
        warnings.append(WIDEBAND_CAVEAT)
    return warnings


def rating(inputs: EModelInput) -> EModelResult:
    """Compute R and MOS with every intermediate term (G.107 narrowband, or G.107.1 when ``inputs.wideband``)."""
    p = inputs
    warnings = _check(p)
    if p.wideband:
        no = _noise(p, NFOR_WB if p.nfor is None else p.nfor)
        ro, iolr, ist, iq = RO_WB, 0.0, 0.0, 0.0
        idte = _idte_wb(p, no)
        idle = _idle(ro, p)
        idd = WB_SCALE * _idd(p)
    else:
        no = _noise(p, NFOR_NB if p.nfor is None else p.nfor)
        ro = 15.0 - 1.5 * (p.slr + no)
        iolr = _iolr(p, no)
        ist = _ist(p)
        iq = _iq(p, ro)
        idte = _idte(p, no, ist)
        idle = _idle(ro, p)
        idd = _idd(p)
    is_ = iolr + ist + iq
    id_ = idte + idle + idd
    ief = ie_eff(p.ie, p.ppl, p.bpl, p.burst_r)
    if ief > IE_EFF_MAX:
        warnings.append(
            f"Ie,eff = {ief:.1f} exceeds 95: Ppl (1 - 1/BurstR) > Bpl, bursty loss beyond the "
            "range the loss formula was fitted to"
        )
    r = ro - is_ - id_ - ief + p.a
    return EModelResult(
        r=r,
        mos=mos_from_r(r, p.wideband),
        wideband=p.wideband,
        ro=ro,
        is_=is_,
        iolr=iolr,
        ist=ist,
        iq=iq,
        id=id_,
        idte=idte,
        idle=idle,
        idd=idd,
        ie_eff=ief,
        a=p.a,
        no=no,
        inputs=p,
        warnings=tuple(warnings),
    )


def r_factor(
    ta_ms: float,
    ppl: float,
    burst_r: float = 1.0,
    ie: float = 0.0,
    bpl: float = 1.0,
    wideband: bool = False,
    t_ms: float | None = None,
    tr_ms: float | None = None,
) -> float:
    """R for a delay and loss with every other parameter at its default.

    ``t_ms``/``tr_ms`` None: no echo path delay (T = Tr = 0, the G.107 defaults). For a real call's echo
    assumptions (T = Ta, Tr = 2 Ta) use :func:`call_inputs`. ``bpl`` defaults to G.107's 1; pass the codec's.
    """
    p = EModelInput(
        ta=ta_ms,
        ppl=ppl,
        burst_r=burst_r,
        ie=ie,
        bpl=bpl,
        wideband=wideband,
        t=0.0 if t_ms is None else t_ms,
        tr=0.0 if tr_ms is None else tr_ms,
    )
    return rating(p).r


def absolute_delay_ms(one_way_network_ms: float, codec: str | EModelParams | Codec, jitter_buffer_ms: float) -> float:
    """Ta, the mouth-to-ear delay: network + packetization + jitter buffer + codec delay.

    - ``one_way_network_ms``: mean one-way delay on the wire, first bit sent to last bit received (what the
      packet taps measure: send to receive time).
    - packetization (``codec.packetization_ms``): a sample at the start of a packet waits one ptime before
      the packet is sent; this also covers accumulating the codec frame(s) in it.
    - ``jitter_buffer_ms``: mean time a packet waits in the receiver's playout buffer before being played
      (the playout model's mean buffering delay, not its maximum size).
    - codec delay (``codec.codec_delay_ms``): algorithmic delay beyond the frame: look-ahead and filter
      banks. Sound-card and OS audio buffering are not included (the testbed has none in the path).
    """
    c = lookup_codec(codec)
    for name, value in (("one_way_network_ms", one_way_network_ms), ("jitter_buffer_ms", jitter_buffer_ms)):
        if not math.isfinite(value) or value < 0:
            raise InputError(f"{name} = {value} must be a non-negative number of milliseconds")
    return one_way_network_ms + c.packetization_ms + jitter_buffer_ms + c.codec_delay_ms


def call_inputs(
    one_way_ms: float, ppl: float, burst_r: float, codec: str | EModelParams | Codec, wideband: bool | None = None
) -> EModelInput:
    """E-model inputs for one direction of a testbed call.

    ``one_way_ms`` is the mouth-to-ear delay Ta (see :func:`absolute_delay_ms`), ``ppl`` the effective loss in
    percent (lost + too late for playout), ``burst_r`` the observed burst ratio. Echo assumptions for a WebRTC
    softphone with acoustic echo cancellation: TELR 65 dB and WEPL 110 dB (G.107 defaults), T = Ta,
    Tr = 2 Ta. ``wideband`` None: the codec's own scale; a value contradicting the codec is refused, because
    a narrowband Ie is not a wideband Ie,wb.
    """
    c = lookup_codec(codec)
    if wideband is not None and wideband != c.wideband:
        scale = "wideband (G.107.1)" if wideband else "narrowband (G.107)"
        raise InputError(
            f"codec {c.name!r} has {'wideband' if c.wideband else 'narrowband'} impairment values; "
            f"it cannot be scored on the {scale} scale"
        )
    return EModelInput(
        ta=one_way_ms,
        t=one_way_ms,
        tr=2.0 * one_way_ms,
        ppl=ppl,
        burst_r=burst_r,
        ie=c.ie,
        bpl=c.bpl,
        wideband=c.wideband,
    )
