"""The profiling applet: verifiable sampling and exact profile matching for forecasting.

Two ways to tell a forecaster what kind of customer this is (issue 6):

* **Sampling** (the proposal: one reading in ``k``, k = 100): the indices come from the
  coin toss of :mod:`meterhub.crypto.sampling`; the applet releases each sampled
  reading with its opening, which the forecaster checks against the commitment.
* **Exact matching**: for each signed reference profile ``w_k`` (BDEW H0, G0..G6,
  L0..L2 and the utility's own, :mod:`meterhub.tariffs.profiles`) the linear score
  ``s_k = sum_h w_k,h * M_h`` with its opening, the energy ``E = sum_h M_h`` with its
  opening, and the sum of squares ``S = sum_h M_h^2`` with its opening and one short
  proof (:func:`meterhub.crypto.sumsquares.prove`, an inner-product argument,
  docs/proofs.md; statements with the older square-by-square proof still verify), where ``M_h`` is the energy of
  profile interval ``h`` (an hour: four 15-minute readings, whose commitment the
  verifier forms by adding the four meter commitments). From ``n, E, S, s_k`` and the
  public weights the forecaster computes Pearson's r and a Gaussian log-likelihood
  per profile (:mod:`meterhub.utility.forecasting`) without seeing one reading.

Host commands as the settlement applet (``10`` PAIR METER, ``20`` PUT DAY P1 ``01``,
``32`` GET STATE; :mod:`meterhub.applets.settlement`). Outputs go only to the
forecasting party through STORE DATA from the applet's security domain (the grid
operator's in the demo: it balances the grid and forecasts its load), inside its SCP03
session. Message types (first byte):

* ``01`` + a signed load profile → stored per profile id; refusals as for the price index
  (``6A80`` malformed/unsigned/wrong format, ``6982`` signature, ``6984`` expired,
  ``6985`` older version).
* ``10`` + period (two ``u16 y u8 m u8 d``) + ``u16 k`` + 32-byte commitment → the
  hub's 32-byte commitment to its nonce (``commit_hub_nonce``; the nonce itself comes
  with the samples). Kept by the privacy guard: not one whole period of the customer's
  cycle or k below the policy's floor → ``6A80``; a period already begun (a reading
  day stored at or after its first day) or a second toss with another commitment or k
  for the period → ``6985``; the same commitment and k again get the same answer (a
  retry after a lost answer or a crash cannot re-toss the coin).
* ``11`` + period + the utility's 32-byte nonce → the sample release (JSON), first
  chunk answered. A nonce that does not open the commitment → ``6982``.
* ``20`` + period + comma-separated profile ids → the score statement (JSON), first
  chunk answered. Unknown profile ``6A88``; over the recipient's budget ``6A84``.
* ``21`` + period + comma-separated profile ids → the same statement as a release of
  kind ``suspects`` (fraud localisation, docs/fraud.md): the grid operator's signed
  suspect profiles, one release per period, ``2 + profiles`` functionals counted
  against the same budget as the forecasting scores.

Every release passes through the privacy guard (one per period and kind; a re-ask
answers the same bytes). Profiles must verify under the customer's pinned
reference-profile publisher (or the recipient's own pinned profile signer) and pass
the policy's shape limits (hourly or coarser, non-negative, bounded range: ``6A80``);
over the period asked for, no profile and no two of one request may isolate fewer than
the policy's ``min_support_hours`` from the energy (``6A80``, nothing computed).
* ``22`` + period + ``u16`` epsilon (thousandths) + comma-separated profile ids → the
  differentially private forecast release (JSON, ``meterhub-dp-forecast/1``,
  :mod:`meterhub.model.dp`): the period's energy with discrete Laplace noise and the
  class by report-noisy-max, hourly profiles only, clip and privacy unit from the
  policy's ``dp`` section, noise drawn on the card (OpenDP). Kind ``dp-forecast``: no
  functionals, the epsilon is charged to the period's DP budget (over it: ``6A84``). No
  opening: noisy figures cannot be checked against commitments, which is the point.
* ``03`` + ``u32 offset`` → the outbox chunk at ``offset``.

Install parameters: empty, or a pinned profile publisher's P-256 key (another: ``6982``).
"""

from __future__ import annotations

import hmac
from datetime import date, datetime
from itertools import islice
from typing import cast

from ..card import register_applet_class
from ..crypto import sumsquares
from ..crypto.group import Q
from ..crypto.pedersen import Commitment, Opening, commit
from ..crypto.sampling import Sample, commit_nonce, derive_indices, derive_seed
from ..model.formats.samples import SAMPLES_FORMAT, SampleRelease
from ..model.formats.scores import SCORES_FORMAT, ProfileScores, ScoreEntry, scores_context
from ..model.formats.units import OPENING_SIZE, iter_opening_units, opening_unit_at
from ..model.timebase import range_starts
from ..policy.model import SW_BUDGET
from ..protocols.iso7816 import CommandAPDU
from ..protocols.iso7816.sw import SW, ISOException
from ..tariffs.price_index import KIND_LOAD_PROFILE, Series, SeriesError, load_series
from .readings import MeteringApplet, parse_date
from .settlement import code_hash_of, fetch_chunk, install_series

__all__ = [
    "CLASS_NAME",
    "SAMPLES_FORMAT",
    "SCORES_FORMAT",
    "ProfilingApplet",
    "hourly_commitments",
    "scores_context",
]

CLASS_NAME = "meterhub.applets.profiling/1"
MAX_PROFILES = 32


def hourly_commitments(openings: list[Opening]) -> list[Commitment]:
    """``C_h = m_h G + r_h H`` for each profile interval, by :func:`meterhub.crypto.pedersen.commit`
    (:func:`~meterhub.crypto.pedersen.commit_point`: the same constant-time work for a zero hour
    as for any other; docs/privacy.md, "Timing"). Before, the generator multiplication of
    ``m = 0`` was skipped, and a month with two weeks of zero hours answered the grid operator
    about 10 ms sooner (``benchmarks/bench_timing_leak.py``)."""
    return [commit(o.m, o.r)[0] for o in openings]


class ProfilingApplet(MeteringApplet):
    """See the module docstring for the command set."""

    KEY_ROLE = "load-profile"

    def process_data(self, apdu: CommandAPDU) -> bytes:
        """STORE DATA from the forecasting party's SD (GP API ``Application.processData``)."""
        msg = self.rs.assemble(apdu)
        if msg is None:
            return b""
        kind, body = msg[0], msg[1:]
        if kind == 0x01:
            try:
                slot = b"p" + load_series(body).series.series_id.encode()
            except SeriesError:
                raise ISOException(SW.WRONG_DATA, "malformed, unsigned or wrong-format series") from None
            try:
                self.guard.check_series(KIND_LOAD_PROFILE, load_series(body).series)
            except SeriesError:
                raise ISOException(SW.WRONG_DATA, "malformed, unsigned or wrong-format series") from None
            install_series(self.rs, body, self.signer_keys(), KIND_LOAD_PROFILE, slot)
            return b""
        if kind == 0x10:
            return self._commit(body)
        if kind == 0x11:
            return self._release_samples(body)
        if kind == 0x20:
            return self._release_scores(body)
        if kind == 0x21:
            return self._release_scores(body, "suspects")
        if kind == 0x22:
            return self._release_dp_forecast(body)
        if kind == 0x03:
            return fetch_chunk(self.guard, body)
        raise ISOException(SW.WRONG_DATA, "unknown message type")

    # -- sampling -------------------------------------------------------------------
    def _commit(self, body: bytes) -> bytes:
        if len(body) != 8 + 2 + 32:
            raise ISOException(SW.WRONG_LENGTH, "commit takes a period, k and 32 bytes")
        first, last = parse_date(body[:4]), parse_date(body[4:8])
        k = int.from_bytes(body[8:10], "big")
        if last < first or k < 1:
            raise ISOException(SW.WRONG_DATA, "bad period or k")
        meter_id = self.rs.pairing()[0]
        # The guard keeps the toss: k floor, one per period, not begun; answers c_H only.
        return bytes(self.guard.toss_commit(meter_id, first, last, k, body[10:42], self.rs.last_day()))

    def _release_samples(self, body: bytes) -> bytes:
        if len(body) != 8 + 32:
            raise ISOException(SW.WRONG_LENGTH, "reveal takes a period and 32 bytes")
        first, last = parse_date(body[:4]), parse_date(body[4:8])
        again = self.guard.begin("samples", first, last, body, chunked=True)
        if again is not None:
            return again
        out, n = self._reveal(body)
        return self.guard.commit("samples", first, last, body, out, functionals=0, samples=n, chunked=True)

    def _release_scores(self, body: bytes, kind: str = "scores") -> bytes:
        """Energy, one score per profile and the sum of squares: ``2 + profiles`` functionals."""
        if len(body) < 9:
            raise ISOException(SW.WRONG_LENGTH, "scores request too short")
        first, last = parse_date(body[:4]), parse_date(body[4:8])
        again = self.guard.begin(kind, first, last, body, chunked=True)
        if again is not None:
            return again
        out, n = self._scores(body)
        return self.guard.commit(kind, first, last, body, out, functionals=n + 2, chunked=True)

    def _reveal(self, body: bytes) -> tuple[bytes, int]:
        first, last = parse_date(body[:4]), parse_date(body[4:8])
        toss = self.guard.toss(first)
        if toss is None:
            raise ISOException(SW.REFERENCED_DATA_NOT_FOUND, "no commitment for this period")
        k, commitment, hub_nonce, _ = toss
        nonce = body[8:40]
        meter_id, tz, interval, _ = self.rs.pairing()
        if not hmac.compare_digest(commit_nonce(meter_id, first, last, k, nonce), commitment):
            raise ISOException(SW.SECURITY_STATUS_NOT_SATISFIED, "nonce does not open the commitment")
        first_index, blob = self.rs.period(first, last)
        count = len(blob) // OPENING_SIZE
        samples = []
        for i in derive_indices(derive_seed(commitment, nonce, hub_nonce), first_index, count, k):
            m, r = opening_unit_at(blob, i - first_index)
            samples.append(Sample(i, m, r))
        release = SampleRelease(
            meter_id=meter_id,
            period_from=first,
            period_to=last,
            first_index=first_index,
            count=count,
            k=k,
            commitment=commitment,
            utility_nonce=nonce,
            hub_nonce=hub_nonce,
            code_hash=code_hash_of(type(self)),
            samples=tuple(samples),
            applet_aid=bytes(self.ctx.aid).hex().upper(),
        )
        return release.to_json().encode(), len(samples)

    # -- differentially private forecast (issue 12) ---------------------------------------
    def _release_dp_forecast(self, body: bytes) -> bytes:
        from ..model.dp import DpError, DpParams, OpenDPNoise, dp_forecast
        from ..model.formats.dp_forecast import DpForecastRelease

        if len(body) < 11:
            raise ISOException(SW.WRONG_LENGTH, "dp forecast request too short")
        first, last = parse_date(body[:4]), parse_date(body[4:8])
        eps_milli = int.from_bytes(body[8:10], "big")
        again = self.guard.begin("dp-forecast", first, last, body, chunked=True)
        if again is not None:
            return again
        lim = self.guard.dp_limits()
        if not 1 <= eps_milli <= self.guard.dp_left(first, last):
            raise ISOException(SW_BUDGET, f"epsilon {eps_milli / 1000} is over what the period has left")
        ids, profiles = self._requested(body[10:])
        if any(p.interval_minutes != 60 for p in profiles):
            raise ISOException(SW.CONDITIONS_NOT_SATISFIED, "a DP forecast uses hourly profiles")
        hourly, point_starts = self._point_sums(first, last, 60)
        try:
            weights = {p.series_id: p.values_for(point_starts, 60) for p in profiles}
            fig = dp_forecast(hourly, weights, DpParams(eps_milli / 1000, lim["clip_wh"], lim["unit_hours"]),
                              OpenDPNoise())
        except SeriesError:
            raise ISOException(SW.CONDITIONS_NOT_SATISFIED, "a profile does not cover the period") from None
        except DpError as exc:
            raise ISOException(SW.WRONG_DATA, str(exc)) from None
        release = DpForecastRelease(
            meter_id=self.rs.pairing()[0], period_from=first, period_to=last, hours=cast(int, fig["hours"]),
            energy_wh=cast(int, fig["energy_wh"]), klass=cast(str, fig["class"]),
            profiles=tuple(cast(list[str], fig["profiles"])), versions={p.series_id: p.version for p in profiles},
            epsilon_milli=cast(int, fig["epsilon_milli"]), clip_wh=cast(int, fig["clip_wh"]),
            unit_hours=cast(int, fig["unit_hours"]), applet_aid=bytes(self.ctx.aid).hex().upper(),
            code_hash=code_hash_of(type(self)),
        )
        out = release.to_json().encode()
        return self.guard.commit("dp-forecast", first, last, body, out, functionals=0, chunked=True,
                                 epsilon_milli=eps_milli)

    def _requested(self, raw: bytes) -> tuple[list[str], list[Series]]:
        try:
            ids = raw.decode().split(",")
        except UnicodeDecodeError:
            raise ISOException(SW.WRONG_DATA, "bad profile ids") from None
        if not 1 <= len(ids) <= MAX_PROFILES or len(set(ids)) != len(ids):
            raise ISOException(SW.WRONG_DATA, "1 to 32 distinct profiles")
        return ids, [self._profile(i) for i in ids]

    def _point_sums(self, first: date, last: date, point: int) -> tuple[list[int], list[datetime]]:
        """The energy of each profile interval of the period (no blindings) and its start."""
        _, tz, interval, _ = self.rs.pairing()
        if point % interval:
            raise ISOException(SW.CONDITIONS_NOT_SATISFIED, "profiles must share one resolution, a multiple of the meter's")
        g = point // interval
        _, blob = self.rs.period(first, last)
        starts = range_starts(first, (last - first).days + 1, tz, interval)
        if 36 * len(starts) != len(blob) or len(starts) % g:
            raise ISOException(SW.CONDITIONS_NOT_SATISFIED, "stored days do not match the time base")
        vals = [int.from_bytes(blob[36 * j : 36 * j + 4], "big") for j in range(len(starts))]
        return [sum(vals[h * g : h * g + g]) for h in range(len(starts) // g)], starts[::g]

    # -- exact matching ---------------------------------------------------------------
    def _profile(self, series_id: str) -> Series:
        raw = self.ctx.store.get(b"p" + series_id.encode())
        if raw is None:
            raise ISOException(SW.REFERENCED_DATA_NOT_FOUND, f"no profile {series_id}")
        cache = getattr(self, "_pcache", {})
        hit = cache.get(series_id)
        if hit is None or hit[0] != raw:
            hit = (raw, load_series(raw).series)
            cache[series_id] = hit
            self._pcache = cache
        return hit[1]

    def _scores(self, body: bytes) -> tuple[bytes, int]:
        first, last = parse_date(body[:4]), parse_date(body[4:8])
        try:
            ids = body[8:].decode().split(",")
        except UnicodeDecodeError:
            raise ISOException(SW.WRONG_DATA, "bad profile ids") from None
        if not 1 <= len(ids) <= MAX_PROFILES or len(set(ids)) != len(ids):
            raise ISOException(SW.WRONG_DATA, "1 to 32 distinct profiles")
        profiles = [self._profile(i) for i in ids]
        point = profiles[0].interval_minutes
        meter_id, tz, interval, _ = self.rs.pairing()
        if any(p.interval_minutes != point for p in profiles) or point % interval:
            raise ISOException(SW.CONDITIONS_NOT_SATISFIED, "profiles must share one resolution, a multiple of the meter's")
        g = point // interval
        first_index, blob = self.rs.period(first, last)
        starts = range_starts(first, (last - first).days + 1, tz, interval)
        if OPENING_SIZE * len(starts) != len(blob) or len(starts) % g:
            raise ISOException(SW.CONDITIONS_NOT_SATISFIED, "stored days do not match the time base")
        # Aggregate readings and blindings per profile interval.
        sums_m: list[int] = []
        sums_r: list[int] = []
        units = iter_opening_units(blob)
        for _ in range(len(starts) // g):
            m = r = 0
            for mj, rj in islice(units, g):
                m += mj
                r += rj
            sums_m.append(m)
            sums_r.append(r % Q)
        point_starts = starts[::g]
        try:
            weights = [p.values_for(point_starts, point) for p in profiles]
        except SeriesError:
            raise ISOException(SW.CONDITIONS_NOT_SATISFIED, "a profile does not cover the period") from None
        # Spikes over this period, alone or between two profiles: 6A80, nothing computed.
        self.guard.check_weights([(p.series_id, list(w)) for p, w in zip(profiles, weights, strict=True)], point)
        scores = [
            ScoreEntry(
                p.series_id,
                p.version,
                p.digest(),
                sum(a * b for a, b in zip(w, sums_m, strict=True)),
                sum(a * b for a, b in zip(w, sums_r, strict=True)) % Q,
            )
            for p, w in zip(profiles, weights, strict=True)
        ]
        openings = [Opening(m, r) for m, r in zip(sums_m, sums_r, strict=True)]
        commitments = hourly_commitments(openings)
        ctx = scores_context(meter_id, first.isoformat(), last.isoformat(), point)
        # Version 2: one inner-product argument (docs/proofs.md), under a kilobyte.
        proof, _, sq = sumsquares.prove(commitments, openings, ctx)
        statement = ProfileScores(
            meter_id=meter_id,
            period_from=first,
            period_to=last,
            first_index=first_index,
            count=len(starts),
            point_minutes=point,
            applet_aid=bytes(self.ctx.aid).hex().upper(),
            code_hash=code_hash_of(type(self)),
            energy_wh=sum(sums_m),
            energy_blinding=sum(sums_r) % Q,
            squares=sq.m,
            squares_blinding=sq.r,
            squares_proof=proof,
            scores=tuple(scores),
        )
        return statement.to_json().encode(), len(scores)


register_applet_class(CLASS_NAME, ProfilingApplet)
