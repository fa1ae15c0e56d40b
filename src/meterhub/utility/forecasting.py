"""Forecasting from verified profile scores or verified samples.

The profiling applet (:mod:`meterhub.applets.profiling`) releases for a period of
``n`` profile intervals (hours) the energy ``E = sum M_h``, the committed and
proven sum of squares ``S = sum M_h^2`` and, per reference profile ``w``, the
score ``s_w = sum w_h M_h``, each with its opening. :func:`verify_scores` checks

1. format, the reviewed applet's code hash, each profile's id, version and digest;
2. the period's signed batches (:func:`meterhub.utility.verifier.check_period`);
3. the sum-of-squares proof over the hourly commitments ``C_h`` (sums of the meter's
   commitments, formed by point additions), and ``sum C_h^sq == S*G + R_S*H``;
4. all linear figures at once: with fresh random 128-bit weights ``rho``,
   ``sum_h (rho_0 + sum_w rho_w w_h) C_h == (rho_0 E + sum rho_w s_w) G +
   (rho_0 R_E + sum rho_w R_w) H`` (small-exponent batch verification, Bellare,
   Garay, Rabin 1998): one multi-scalar multiplication per customer.

From the verified aggregates and the public weights (``W = sum w_h``,
``W2 = sum w_h^2``):

* Pearson's correlation (Pearson 1895) ``r = (n s - E W) / sqrt((n S - E^2)(n W2 - W^2))``;
* a Gaussian log-likelihood of the readings under the energy-scaled profile,
  ``M_h ~ N(a w_h, sigma^2)`` with ``a = E / W`` and the ML variance
  ``sigma^2 = RSS / n``, ``RSS = S - 2 a s + a^2 W2``:
  ``log L = -n/2 (ln(2 pi sigma^2) + 1)``.

The class is the profile with the highest ``r``. Forecasts scale the class profile of
the next period by the verified energy: ``forecast_h = w'_h * E / W``.
"""

from __future__ import annotations

import dataclasses
import hmac
import math
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np

from ..crypto import sumsquares
from ..crypto.group import G, H, Point, PointArray, PointDecodeError, Q
from ..crypto.pedersen import Commitment
from ..crypto.rangeproof import sum_of_squares_commitment, verify_sum_of_squares
from ..crypto.sampling import (
    SamplingError,
    check_samples,
    commit_hub_nonce,
    derive_seed,
    verify_sample_openings,
)
from ..crypto.transcript import ProofContext, ProofError
from ..model.formats.dp_forecast import DpForecastRelease
from ..model.formats.samples import SampleRelease
from ..model.formats.scores import ProfileScores, scores_context
from ..model.formats.units import iter_commitments
from ..tariffs.price_index import Series, SeriesError
from .settlement import _blob, check_batches, dp_forecast_request
from .verifier import DayCommitments, MeterRegistration, Rejected, Verdict, period_point_sums

__all__ = [
    "DpForecastRelease",
    "Match",
    "ProfileScores",
    "SampleRelease",
    "classify",
    "forecast",
    "loglik",
    "mape",
    "match_samples",
    "period_weights",
    "match_scores",
    "pearson",
    "request_dp_forecast",
    "verify_dp_release",
    "verify_samples",
    "verify_scores",
    "verify_scores_batch",
]


@dataclass
class _ScoreWork:
    """What :func:`verify_scores_batch` keeps of one statement between its checks."""

    st: ProfileScores
    hourly: PointArray
    weights: list[list[int]]
    #: Each profile's weights as a numpy array (:func:`_packed`), or ``None`` where a
    #: weight is negative or too large for the numpy path.
    packed: list[np.ndarray | None] = dataclasses.field(default_factory=list)


def _prepare_scores(
    st: ProfileScores,
    meter: MeterRegistration,
    days: Sequence[DayCommitments],
    profiles: dict[str, Series],
    code_hash: str | None,
    applet_aid: str | None,
    weight_cache: dict[tuple, dict[tuple, tuple[list[int], np.ndarray | None, int, int]]] | None = None,
) -> _ScoreWork:
    """Checks 1, 2 and the range checks of one statement; raises :class:`Rejected`."""
    if code_hash is not None and st.code_hash != code_hash:
        raise Rejected("statement is not from the reviewed profiling applet (code hash)")
    _check_applet(st.applet_aid, applet_aid, "statement")
    series = []
    for e in st.scores:
        p = profiles.get(e.series_id)
        if p is None:
            raise Rejected(f"unknown profile {e.series_id!r:.40}")
        if p.version != e.version or p.digest() != e.digest:
            raise Rejected(f"profile {e.series_id!r:.40}: version or digest differs from the signed profile")
        if p.interval_minutes != st.point_minutes:
            raise Rejected(f"profile {e.series_id!r:.40}: resolution differs")
        series.append(p)
    starts = check_batches(
        st.meter_id, st.period_from, st.period_to, st.first_index, st.count, st.energy_wh, meter, days
    )
    g, rem = divmod(st.point_minutes, meter.interval_minutes)
    flat = [s for day in starts for s in day]
    if rem or g < 1 or len(flat) % g:
        raise Rejected("point resolution does not fit the meter's intervals")
    # V17, before any group equation: with n points of readings M_h >= 0 summing to E,
    # E^2/n <= sum M_h^2 <= E^2 (Cauchy-Schwarz) and min(w)*E <= sum w_h M_h <= max(w)*E.
    n_points = len(flat) // g
    if not (st.energy_wh**2 <= n_points * st.squares and st.squares <= st.energy_wh**2):
        raise Rejected(f"sum of squares {st.squares} out of range for energy {st.energy_wh}")
    try:
        points = tuple(flat[::g])
        weights = []
        packed = []
        bounds = []
        # Customers of one period share the profile weights: looked up once per batch, under
        # the exact interval starts (hashed once per statement) and each profile's identity.
        per_points: dict[tuple, tuple[list[int], np.ndarray | None, int, int]] = {}
        if weight_cache is not None:
            per_points = weight_cache.setdefault((st.point_minutes, points), {})
        for p in series:
            key = (p.series_id, p.version, p.digest())
            hit = per_points.get(key)
            if hit is None:
                w = p.values_for(list(points), st.point_minutes)
                hit = (w, _packed(w), min(w), max(w))
                per_points[key] = hit
            weights.append(hit[0])
            packed.append(hit[1])
            bounds.append(hit[2:])
    except SeriesError as exc:
        raise Rejected(str(exc)) from None
    for e, (w_min, w_max) in zip(st.scores, bounds, strict=True):
        if not w_min * st.energy_wh <= e.score <= w_max * st.energy_wh:
            raise Rejected(f"profile {e.series_id!r:.40}: score {e.score} out of range for energy {st.energy_wh}")
    try:
        hourly = period_point_sums(days, g)
    except PointDecodeError as exc:
        raise Rejected(f"a commitment does not decode: {exc}") from None
    if not 0 <= st.squares < Q:
        raise Rejected("sum of squares does not fit below the group order")
    return _ScoreWork(st, hourly, weights, packed)


#: Largest profile weight the numpy path of :func:`_data_limbs` takes: a 32-bit chunk of a
#: weight ``rho_w`` times a weight, summed over up to 16 profiles, must stay below ``2^63``.
_WEIGHT_MAX = 1 << 26
_MASK32 = np.uint64(0xFFFFFFFF)


def _packed(values: Sequence[int]) -> np.ndarray | None:
    """A profile's weights as an ``int64`` array for :func:`_data_limbs`, or ``None`` where
    a weight is negative or not below :data:`_WEIGHT_MAX` (those take the per-hour path)."""
    if not values or min(values) < 0 or max(values) >= _WEIGHT_MAX:
        return None
    return np.fromiter(values, dtype=np.int64, count=len(values))


def _linear_weights(work: _ScoreWork) -> tuple[int, list[int], int, int]:
    """Check 4's fresh secret 128-bit weights ``rho_0, rho_w`` and the right-hand side's
    ``G`` and ``H`` scalars."""
    st = work.st
    rho0 = secrets.randbits(128) | 1
    rho = [secrets.randbits(128) | 1 for _ in work.weights]
    gv = (rho0 * st.energy_wh + sum(rk * e.score for rk, e in zip(rho, st.scores, strict=True))) % Q
    hv = (rho0 * st.energy_blinding + sum(rk * e.blinding for rk, e in zip(rho, st.scores, strict=True))) % Q
    return rho0, rho, gv, hv


def _linear_scalars(work: _ScoreWork) -> tuple[list[int], int, int]:
    """Check 4's weights: per hour ``rho_0 + sum_w rho_w w_h`` and the right-hand side's
    ``G`` and ``H`` scalars, with fresh secret 128-bit ``rho``."""
    rho0, rho, gv, hv = _linear_weights(work)
    scalars = [rho0] * len(work.hourly)
    for rk, w in zip(rho, work.weights, strict=True):
        scalars = [a + rk * b for a, b in zip(scalars, w, strict=True)]
    return scalars, gv, hv


def _data_limbs(work: _ScoreWork, link_bytes: bytes, rho0: int, rho: Sequence[int]) -> np.ndarray | None:
    """The data scalars ``c_h + rho_0 + sum_w rho_w w_h`` of every hour as four 64-bit
    limbs each, in numpy: each 128-bit ``rho_w`` in four 32-bit chunks, so that
    ``sum_w chunk_l(rho_w) w_h`` is one integer matrix product with every entry below
    ``2^63``; the chunks, ``rho_0`` and the link coefficients are then added with their
    carries propagated 32 bits at a time. The same integers as the per-hour sums,
    without a Python integer per hour. ``None`` if a profile's weights are not in the
    range this needs (:func:`_packed`), there are more than 16 profiles, or
    ``link_bytes`` does not hold one coefficient per hour."""
    n = len(work.hourly)
    if len(link_bytes) != 16 * n or len(rho) > 16 or any(p is None for p in work.packed):
        return None
    if any(r < 0 or r >> 128 for r in (rho0, *rho)):
        return None
    acc = np.zeros((9, n), dtype=np.uint64)  # 32-bit positions 0..8 (values below 2^160)
    if rho:
        weights = np.stack([p for p in work.packed if p is not None])  # (profiles, n)
        chunks = np.array([[(r >> (32 * k)) & 0xFFFFFFFF for r in rho] for k in range(4)], dtype=np.int64)
        prod = (chunks @ weights).astype(np.uint64)  # (4, n), each below 2^63
        for k in range(4):
            acc[k] += prod[k] & _MASK32
            acc[k + 1] += prod[k] >> np.uint64(32)
    # c_h: 16 big-endian bytes each -> four little-endian 32-bit chunks.
    c = np.frombuffer(link_bytes, dtype=">u4").reshape(n, 4)[:, ::-1].astype(np.uint64)
    for k in range(4):
        acc[k] += c[:, k] + np.uint64((rho0 >> (32 * k)) & 0xFFFFFFFF)
    for k in range(8):
        acc[k + 1] += acc[k] >> np.uint64(32)
        acc[k] &= _MASK32
    limbs = np.empty((n, 4), dtype=np.uint64)
    for k in range(4):
        limbs[:, k] = acc[2 * k] | (acc[2 * k + 1] << np.uint64(32))
    if acc[8].any():
        return None  # not below 2^256 (cannot happen within the ranges above)
    return limbs


def _context(st: ProfileScores) -> ProofContext:
    return scores_context(st.meter_id, st.period_from.isoformat(), st.period_to.isoformat(), st.point_minutes)


def _verify_v1(work: _ScoreWork) -> None:
    """Version-1 statements (one square proof per hour), kept verifiable."""
    st = work.st
    ctx = _context(st)
    cs = [Commitment(p) for p in work.hourly.points()]
    try:
        if not verify_sum_of_squares(cs, st.squares_proof, ctx):
            raise Rejected("sum-of-squares proof does not verify")
        s_commit = sum_of_squares_commitment(len(cs), st.squares_proof)
    except ProofError as exc:
        raise Rejected(f"sum-of-squares proof malformed: {exc}") from None
    if s_commit.point != G * st.squares + H * st.squares_blinding:
        raise Rejected("sum of squares or its opening does not match the proof's commitment")
    scalars, gv, hv = _linear_scalars(work)
    if work.hourly.msm(scalars) != G * gv + H * hv:
        raise Rejected("energy or a profile score does not match the commitments")


def _equation_v2(work: _ScoreWork) -> tuple[sumsquares.SquaresCheck, Point]:
    """Checks 3 and 4 of a version-2 statement as one equation: the proof's check
    (:func:`meterhub.crypto.sumsquares.squares_check`) plus the linear check, whose
    points are the same hourly commitments, so that one multi-scalar multiplication
    over them with scalars ``c_h + rho_0 + sum_w rho_w w_h`` serves both."""
    st = work.st
    ctx = _context(st)
    try:
        ck = sumsquares.squares_check(
            work.hourly.to_bytes(), st.squares, st.squares_blinding, st.squares_proof, ctx
        )
    except ProofError as exc:
        raise Rejected(f"sum-of-squares proof malformed: {exc}") from None
    if ck is None:
        raise Rejected("sum-of-squares proof has a degenerate challenge")
    rho0, rho, gv, hv = _linear_weights(work)
    limbs = _data_limbs(work, ck.link_bytes, rho0, rho)
    if limbs is not None:
        data = work.hourly.msm_limbs(limbs)
    else:
        scalars = [rho0] * len(work.hourly)
        for rk, w in zip(rho, work.weights, strict=True):
            scalars = [a + rk * b for a, b in zip(scalars, w, strict=True)]
        data = work.hourly.msm([a + b for a, b in zip(scalars, ck.link, strict=True)])
    return dataclasses.replace(ck, g=(ck.g - gv) % Q, h=(ck.h - hv) % Q), data


def verify_scores_batch(
    items: Sequence[tuple[ProfileScores, MeterRegistration, Sequence[DayCommitments]]],
    profiles: dict[str, Series],
    *,
    code_hash: str | None = None,
    applet_aid: str | None = None,
) -> list[Verdict]:
    """Verify many score statements (checks 1-4 each): every version-2 statement's
    proof and linear checks go into one random linear combination over the whole batch
    (:func:`meterhub.crypto.sumsquares.check_equations`: one multi-scalar
    multiplication over the shared vector generators per batch, one over the hourly
    commitments per statement). If the batch equation fails, each statement is checked
    on its own, so a verdict always names the statement that fails. Version-1
    statements are verified one by one."""
    verdicts: list[Verdict | None] = [None] * len(items)
    pending: list[tuple[int, tuple[sumsquares.SquaresCheck, Point]]] = []
    weight_cache: dict[tuple, dict[tuple, tuple[list[int], np.ndarray | None, int, int]]] = {}
    for i, (st, meter, days) in enumerate(items):
        try:
            work = _prepare_scores(st, meter, days, profiles, code_hash, applet_aid, weight_cache)
            if st.squares_proof[:1] == bytes([sumsquares.VERSION_IPA]):
                pending.append((i, _equation_v2(work)))
                continue
            _verify_v1(work)
            verdicts[i] = Verdict(True)
        except Rejected as rej:
            verdicts[i] = Verdict(False, str(rej))
    if pending and sumsquares.check_equations([eq for _, eq in pending]):
        for i, _ in pending:
            verdicts[i] = Verdict(True)
    else:
        for i, eq in pending:
            ok = sumsquares.check_equations([eq])
            verdicts[i] = Verdict(True) if ok else Verdict(
                False, "sum-of-squares proof, energy or a profile score does not match the commitments"
            )
    return [v if v is not None else Verdict(False, "not verified") for v in verdicts]


def verify_scores(
    st: ProfileScores,
    meter: MeterRegistration,
    days: Sequence[DayCommitments],
    profiles: dict[str, Series],
    *,
    code_hash: str | None = None,
    applet_aid: str | None = None,
) -> Verdict:
    """Checks 1-4 of the module docstring; a :class:`Verdict` with the first failure."""
    return verify_scores_batch([(st, meter, days)], profiles, code_hash=code_hash, applet_aid=applet_aid)[0]


# ---------------------------------------------------------------- statistics


def pearson(n: int, sx: float, sxx: float, sy: float, syy: float, sxy: float) -> float:
    """Pearson's r from sums (x readings, y weights); 0 when either side is constant."""
    vx = n * sxx - sx * sx
    vy = n * syy - sy * sy
    if vx <= 0 or vy <= 0:
        return 0.0
    return (n * sxy - sx * sy) / math.sqrt(vx * vy)


def loglik(n: int, e: float, s: float, score: float, w: float, w2: float) -> float:
    """Gaussian log-likelihood of the readings under the energy-scaled profile (module doc)."""
    if w <= 0 or n <= 0:
        return -math.inf
    a = e / w
    rss = max(s - 2 * a * score + a * a * w2, 1e-9 * n)
    return -n / 2 * (math.log(2 * math.pi * rss / n) + 1)


@dataclass(frozen=True)
class Match:
    profile: str
    r: float
    loglik: float


def period_weights(profiles: dict[str, Series], point_starts: list) -> dict[str, list[int]]:
    """Each profile's weights over the period's profile intervals."""
    return {name: p.values_for(point_starts, p.interval_minutes) for name, p in profiles.items()}


def match_scores(st: ProfileScores, weights: Mapping[str, Sequence[int]]) -> list[Match]:
    """Pearson and log-likelihood per profile from a verified statement and each
    profile's weights over the statement's period."""
    out = []
    for e in st.scores:
        w = weights[e.series_id]
        n = len(w)
        sw = float(sum(w))
        sw2 = float(sum(x * x for x in w))
        out.append(
            Match(e.series_id, pearson(n, st.energy_wh, st.squares, sw, sw2, e.score),
                  loglik(n, st.energy_wh, st.squares, e.score, sw, sw2))
        )
    return out


def match_samples(
    samples: Sequence[tuple[int, int]], weights: Mapping[str, Sequence[int]], g: int
) -> list[Match]:
    """Pearson and log-likelihood from samples ``(offset in period, m)``: each reading is
    compared with the weight of its profile interval divided by ``g`` (intervals per point)."""
    n = len(samples)
    xs = [float(m) for _, m in samples]
    out = []
    for name, w in weights.items():
        ys = [w[i // g] / g for i, _ in samples]
        sx, sy = sum(xs), sum(ys)
        sxx = sum(x * x for x in xs)
        syy = sum(y * y for y in ys)
        sxy = sum(x * y for x, y in zip(xs, ys, strict=True))
        out.append(Match(name, pearson(n, sx, sxx, sy, syy, sxy), loglik(n, sx, sxx, sxy, sy, syy)))
    return out


def classify(matches: Sequence[Match]) -> str:
    """The profile with the highest Pearson correlation (ties: higher log-likelihood)."""
    return max(matches, key=lambda m: (m.r, m.loglik)).profile


def _check_applet(named: str, expected: str | None, what: str) -> None:
    """V23-V25: the statement names the applet instance the recipient talked to."""
    if expected is not None and named != expected:
        raise Rejected(f"{what} names applet {named!r:.40}, not the {expected} the recipient talked to")


def verify_samples(
    rel: SampleRelease,
    meter: MeterRegistration,
    days: Sequence[DayCommitments],
    *,
    commitment: bytes,
    utility_nonce: bytes,
    hub_commitment: bytes,
    k: int,
    code_hash: str | None = None,
    applet_aid: str | None = None,
) -> Verdict:
    """Check a sample release against the utility's own side of the coin toss (its
    commitment, nonce, the hub's commitment to its nonce received at commit time
    (``commit_hub_nonce``) and ``k``), the batches, the derived indices and every opening."""
    try:
        if code_hash is not None and rel.code_hash != code_hash:
            raise Rejected("release is not from the reviewed profiling applet (code hash)")
        _check_applet(rel.applet_aid, applet_aid, "release")
        if (rel.commitment, rel.utility_nonce, rel.k) != (commitment, utility_nonce, k):
            raise Rejected("the release uses another coin toss (commitment, nonces or k)")
        if len(rel.hub_nonce) != 32 or not hmac.compare_digest(commit_hub_nonce(rel.hub_nonce), hub_commitment):
            raise Rejected("the hub nonce does not open the hub's commitment")
        hub_nonce = rel.hub_nonce
        if rel.meter_id != meter.meter_id:
            raise Rejected(f"release is for meter {rel.meter_id!r}")
        check_batches(rel.meter_id, rel.period_from, rel.period_to, rel.first_index, rel.count, 0, meter, days)
        try:
            check_samples(rel.samples, derive_seed(commitment, utility_nonce, hub_nonce), rel.first_index, rel.count, k)
        except SamplingError as exc:
            raise Rejected(str(exc)) from None
        blob, width = _blob(days)
        picked = b"".join(blob[(s.index - rel.first_index) * width : (s.index - rel.first_index + 1) * width]
                          for s in rel.samples)
        if width == 33:
            picked = b"".join(Point.from_bytes(c).to_bytes_uncompressed() for c in iter_commitments(picked))
        if not verify_sample_openings(rel.samples, picked):
            raise Rejected("a sampled reading or its opening does not match its commitment")
    except Rejected as rej:
        return Verdict(False, str(rej))
    return Verdict(True)


# ---------------------------------------------------------------- forecasts


def forecast(shape: Sequence[float], energy_now: float, weight_now: float) -> list[float]:
    """The class profile of the next period scaled by the verified energy of this one."""
    a = energy_now / weight_now if weight_now > 0 else 0.0
    return [a * x for x in shape]


def mape(pred: Sequence[float], truth: Sequence[float]) -> float:
    """Mean absolute percentage error (%) over points with non-zero truth."""
    pairs = [(p, t) for p, t in zip(pred, truth, strict=True) if t]
    return 100.0 * sum(abs(p - t) / abs(t) for p, t in pairs) / max(1, len(pairs))


# ---------------------------------------------------------------- DP forecasts (issue 12)


def dp_forecast_next(rel: DpForecastRelease, shape_next: Sequence[float], weight_now: float) -> list[float]:
    """The class profile of the next period scaled by a DP release's noisy energy (clamped
    at 0: the noise may make it negative)."""
    return forecast(shape_next, max(0, rel.energy_wh), weight_now)


def verify_dp_release(rel: DpForecastRelease, policy: Any, *, applet_aid: str, code_hash: str,
                      asked: Sequence[str] | None = None) -> None:
    """The forecaster's check of a DP forecast release against the household's release
    ``policy`` (:class:`~meterhub.policy.ReleasePolicy`): the reviewed applet, one whole
    period of the policy's cycle, its hours, and the ``dp`` section's epsilon cap, clip and
    privacy unit (docs/privacy.md "The DP forecast option"); ``asked``: the profile ids the
    request named. Raises ``ValueError`` naming the first field that does not match. The
    noisy figures themselves cannot be checked (class docstring)."""
    if rel.applet_aid.upper() != applet_aid.upper():
        raise ValueError(f"dp forecast: from applet {rel.applet_aid[:32]}, not {applet_aid}")
    if not hmac.compare_digest(rel.code_hash.lower().encode(), code_hash.lower().encode()):
        raise ValueError("dp forecast: code hash is not the reviewed profiling applet's")
    if not policy.cycle.is_period(rel.period_from, rel.period_to):
        raise ValueError(f"dp forecast: {rel.period_from}..{rel.period_to} is not one period of the policy's cycle")
    days = (rel.period_to - rel.period_from).days + 1
    if not 23 * days <= rel.hours <= 25 * days:  # a DST change moves the count by one per change
        raise ValueError(f"dp forecast: {rel.hours} hours in a {days}-day period")
    dp = policy.limits["dp"]
    if not 1 <= rel.epsilon_milli <= dp["epsilon_milli_per_period"]:
        raise ValueError(f"dp forecast: epsilon {rel.epsilon_milli / 1000} outside the policy's "
                         f"0.001..{dp['epsilon_milli_per_period'] / 1000} per period")
    if (rel.clip_wh, rel.unit_hours) != (dp["clip_wh"], dp["unit_hours"]):
        raise ValueError(f"dp forecast: clip {rel.clip_wh} Wh / unit {rel.unit_hours} h, the policy says "
                         f"{dp['clip_wh']} Wh / {dp['unit_hours']} h")
    if asked is not None and sorted(rel.profiles) != sorted(asked):
        raise ValueError("dp forecast: the profiles are not the ones asked for")


def request_dp_forecast(mailbox: Any, first: date, last: date, epsilon_milli: int, profile_ids: Sequence[str],
                        policy: Any, *, code_hash: str) -> DpForecastRelease:
    """The grid operator's call: message ``22`` to the profiling applet through ``mailbox``
    (:class:`~meterhub.utility.settlement.AppletMailbox` on its security domain), the
    answer parsed and checked with :func:`verify_dp_release`, including that it answers
    this request (period and epsilon). Raises ``HubRefused`` or ``ValueError``."""
    raw = mailbox.request(dp_forecast_request(first, last, epsilon_milli, profile_ids), "dp forecast")
    rel = DpForecastRelease.from_json(raw)
    verify_dp_release(rel, policy, applet_aid=mailbox.app_aid, code_hash=code_hash, asked=profile_ids)
    if (rel.period_from, rel.period_to, rel.epsilon_milli) != (first, last, epsilon_milli):
        raise ValueError("dp forecast: the release answers another period or epsilon")
    return rel
