"""The billing applet: bills computed inside the hub's secure element.

Pairing, day storage and STORE DATA framing are the shared
:class:`meterhub.applets.readings.ReadingsStore`.

The applet holds a meter's openings, received sealed over the home link, and
the supplier's signed tariff, and releases only bill statements
(``sum t_i*m_i`` and ``sum t_i*r_i mod Q``; see :mod:`meterhub.hub.billing`).
Readings never leave it.

Commands (proprietary class ``80``; data fields are big-endian):

======  ===========  ==========================================================
INS     name         data → response
======  ===========  ==========================================================
``10``  PAIR METER   BER-TLV ``80`` meter id, ``81`` time zone, ``82`` interval
                     minutes (1 byte), optionally ``83`` the home-link key
                     (16 bytes; needed for sealed days). Once only (the
                     customer pairs the meter); again → ``6985``.
``12``  PUT TARIFF   a signed tariff file (docs/tariffs.md). The signature must
                     verify under a tariff signer the customer pinned for this
                     applet's recipient (the privacy guard), else ``6A80``; an
                     older version than the stored one → ``6985``; outside the
                     release policy's tariff limits → ``6A80``; a second change
                     in one billing period → ``6985``.
``20``  PUT DAY      P1 ``00``: ``u16 year, u8 month, u8 day, u64 first index,
                     u32 count, 12-byte nonce, AES-GCM ciphertext``
                     (docs/formats.md, "Sealed openings"), opened with the
                     home-link key. P1 ``01``: the same header without the
                     nonce, then ``count`` plain openings ``u32 m || 32-byte r``
                     from the hub's host, which terminates the DLMS home link.
                     Days follow on, or come after a recorded gap; a missing day
                     delivered late must fit its neighbours' indices; a repeated
                     identical day is accepted again (idempotent delivery).
``30``  GET BILL     ``u16 y, u8 m, u8 d`` first and last day (inclusive) →
                     the bill statement as JSON (docs/formats.md): v1 for a
                     time-of-use tariff, v2 with zero-knowledge proofs for a
                     non-linear one (tiered, inclining-block, polynomial;
                     docs/nonlinear.md). Longer answers than Ne come in
                     ``61xx`` chunks (GET RESPONSE).
``34``  GET BANDED   the two dates as GET BILL, then ``u8 length || metering point``
        BILL         and ``u8 length || contract id`` (ASCII) → the v3 statement
                     (docs/formats.md, "Bill statement v3"): the bill plus energy and
                     blinding per tariff band, for a time-of-use tariff only. Counted as
                     one functional per band (the bill is their priced sum); one bill
                     per period, so GET BILL and GET BANDED BILL exclude each other.
                     A band occurring on fewer days than the period's smaller calendar
                     class (:func:`meterhub.model.billing.bands.thin_bands`) refuses it ``6A80``.
                     With days missing (a gap the card recorded): bill parts, a v3
                     statement per held run and the missing runs (docs/formats.md,
                     "Bill parts"). P1 ``01``: the one correction of such a release,
                     for the days that have arrived since (``6985`` for a second one or
                     when nothing was missing, ``6A88`` when nothing has arrived).
``32``  GET STATE    → ``u64 next index`` and the last stored day (4 bytes, or
                     none).
======  ===========  ==========================================================

STORE DATA (``E2``, through the supplier's security domain after INSTALL [for
personalization], GPC 2.3.1 §11.11) carries a signed tariff in blocks; the
last block installs it as PUT TARIFF does.

Install parameters: empty, or a pinned tariff signer's P-256 key (65 bytes, SEC 1);
any other key → ``6982`` (the customer pins the keys, not the recipient).
GET BILL is released through the privacy guard: only a whole billing period of the
customer's cycle, or one piece of it split at the customer's split days or at a
tariff's first day, one bill per period (a re-ask answers the same bytes). The applet
keeps each tariff by its first day, so the piece before a change is billed under the
old tariff; GET BILL (v1/v2) still needs every day of the period.
Each day is stored in one atomic transaction (JCRE ch. 7).

Openings from the host (P1 ``01``) need no integrity protection for the
bill's sake: a wrong opening only yields a bill the utility rejects. They do
pass through the host in the clear, which the DLMS home link already implies.
"""

from __future__ import annotations

from datetime import date

from ..card import ins, register_applet_class
from ..model.billing import BillJob, engine_for, issue_statement
from ..model.billing.bands import thin_bands
from ..model.errors import FormatError
from ..model.formats.bill_parts import BillParts
from ..model.formats.statements import BandedBillStatement
from ..model.formats.units import OpeningUnits
from ..model.ids import check_contract_id, check_metering_point
from ..protocols.iso7816 import CommandAPDU
from ..protocols.iso7816.sw import SW, ISOException
from ..tariffs import Tariff, TariffError, load_tariff, verify_tariff
from ..tariffs.nonlinear import NonLinearTariff
from .readings import (
    MeteringApplet,
    encode_day,
    encode_openings_day,
    encode_pairing,
    openings_from_blob,
    parse_date,
)

__all__ = ["BillingApplet", "CLASS_NAME", "encode_day", "encode_openings_day", "encode_pairing"]

CLASS_NAME = "meterhub.applets.billing/1"

_K_TARIFF = b"tariff"
_K_TARIFF_FROM = b"tv/"  # + first day (ISO): the tariff in force from then


class BillingApplet(MeteringApplet):
    """See the module docstring for the command set."""

    KEY_ROLE = "tariff"

    @ins(0x12, cla=0x80)
    def put_tariff(self, apdu: CommandAPDU) -> None:
        self._install_tariff(bytes(apdu.data))

    def _install_tariff(self, raw: bytes) -> None:
        if self.ctx.store.get(_K_TARIFF) == raw:
            return  # the same signed tariff again (a host re-delivering it): no change
        try:
            signed = load_tariff(raw)
        except TariffError:
            raise ISOException(SW.WRONG_DATA, "tariff refused") from None
        tariff = None
        for key in self.signer_keys():
            try:
                tariff = verify_tariff(signed, key)
                break
            except TariffError:
                continue
        if tariff is None:
            raise ISOException(SW.WRONG_DATA, "tariff refused: not signed by a pinned tariff signer")
        old = self.ctx.store.get(_K_TARIFF)
        if old is not None:
            current = load_tariff(old).tariff
            if current.tariff_id == tariff.tariff_id and tariff.version < current.version:
                raise ISOException(SW.CONDITIONS_NOT_SATISFIED, "older tariff version")
        # The policy's tariff limits and changes per billing period (docs/privacy.md).
        self.guard.accept_tariff(tariff, self.rs.last_day())
        start: date = tariff.valid_from  # both tariff kinds (BillTariff interface)
        self.ctx.begin_transaction()
        self.ctx.store.put(_K_TARIFF, raw)
        # Kept by first day, so a period before a change is billed under the old tariff.
        self.ctx.store.put(_K_TARIFF_FROM + start.isoformat().encode(), raw)
        self.ctx.commit_transaction()

    def _tariff_raw_for(self, first_day: date, last_day: date) -> bytes:
        """The stored tariff in force from ``first_day``: the one with the latest first day
        on or before it (the latest stored tariff when none was kept by first day); a
        tariff taking effect inside the period answers ``6985`` (the guard splits the
        period there, docs/privacy.md "Split periods")."""
        listing = self.ctx.store.keys  # the store's own listing (not a dict)
        starts = sorted(
            date.fromisoformat(k[len(_K_TARIFF_FROM):].decode()) for k in listing() if k.startswith(_K_TARIFF_FROM)
        )
        if any(first_day < d <= last_day for d in starts):
            raise ISOException(SW.CONDITIONS_NOT_SATISFIED, "a tariff takes effect inside the period: bill its pieces")
        before = [d for d in starts if d <= first_day]
        raw = self.ctx.store.get(_K_TARIFF_FROM + before[-1].isoformat().encode()) if before else None
        raw = raw or self.ctx.store.get(_K_TARIFF)
        if raw is None:
            raise ISOException(SW.CONDITIONS_NOT_SATISFIED, "no tariff")
        return raw

    def _tariff(self, raw: bytes) -> Tariff | NonLinearTariff:
        """The stored tariff, parsed once per content (its signature was checked on entry)."""
        cached = getattr(self, "_tariff_cache", None)
        if cached is not None and cached[0] == raw:
            return cached[1]
        tariff = load_tariff(raw).tariff
        self._tariff_cache = (raw, tariff)
        return tariff

    def process_data(self, apdu: CommandAPDU) -> bytes:
        """STORE DATA blocks from the security domain (GP API ``Application.processData``):
        the last block's arrival installs the assembled tariff."""
        data = self.rs.assemble(apdu)
        if data is not None:
            self._install_tariff(data)
        return b""

    # -- bills --------------------------------------------------------------------
    @ins(0x30, cla=0x80)
    def get_bill(self, apdu: CommandAPDU) -> bytes:
        """One bill per billing period of the customer's cycle, through the guard: a
        re-ask answers the stored statement byte for byte."""
        meter_id, tz, interval, _ = self.rs.pairing()
        if len(apdu.data) != 8:
            raise ISOException(SW.WRONG_LENGTH, "GET BILL takes two dates")
        first_day, last_day = parse_date(bytes(apdu.data[:4])), parse_date(bytes(apdu.data[4:]))
        if last_day < first_day:
            raise ISOException(SW.WRONG_DATA, "period ends before it starts")
        raw = self._tariff_raw_for(first_day, last_day)
        request = bytes(apdu.data) + raw  # the same period under the same tariff
        again = self.guard.begin("bill", first_day, last_day, request, chunked=False)
        if again is not None:
            return again
        st = self._compute_bill(raw, meter_id, tz, interval, first_day, last_day)
        return self.guard.commit("bill", first_day, last_day, request, st, functionals=1, chunked=False)

    @ins(0x34, cla=0x80)
    def get_banded_bill(self, apdu: CommandAPDU) -> bytes:
        """GET BANDED BILL: the v3 statement, through the guard as kind ``bill``."""
        meter_id, tz, interval, _ = self.rs.pairing()
        data = bytes(apdu.data)
        if len(data) < 10:
            raise ISOException(SW.WRONG_LENGTH, "GET BANDED BILL takes two dates and two ids")
        first_day, last_day = parse_date(data[:4]), parse_date(data[4:8])
        n = data[8]
        if len(data) < 10 + n or len(data) != 10 + n + data[9 + n]:
            raise ISOException(SW.WRONG_LENGTH, "GET BANDED BILL: id lengths do not match the data")
        try:
            metering_point = check_metering_point(data[9 : 9 + n].decode("ascii"))
            contract = check_contract_id(data[10 + n :].decode("ascii"))
        except (UnicodeDecodeError, FormatError):
            raise ISOException(SW.WRONG_DATA, "metering point or contract id malformed") from None
        if last_day < first_day:
            raise ISOException(SW.WRONG_DATA, "period ends before it starts")
        if apdu.p1 not in (0x00, 0x01) or apdu.p2:
            raise ISOException(SW.INCORRECT_P1P2, "P1 00 (the bill) or 01 (its correction), P2 00")
        raw = self._tariff_raw_for(first_day, last_day)
        stored = self._tariff(raw)
        if BandedBillStatement not in engine_for(stored).statement_types or not isinstance(stored, Tariff):
            raise ISOException(SW.CONDITIONS_NOT_SATISFIED, "per-band energy needs a time-of-use tariff")
        tariff = stored
        ids = (metering_point, contract)
        if apdu.p1 == 0x01:
            return self._banded_correction(b"correct" + data + raw, tariff, ids, first_day, last_day)
        request = b"banded" + data + raw
        again = self.guard.begin("bill", first_day, last_day, request, chunked=False)
        if again is not None:
            return again
        held, missing = self.rs.runs(first_day, last_day)
        if not held:
            raise ISOException(SW.REFERENCED_DATA_NOT_FOUND, "no readings for any day of the period")
        try:
            tariff.check_valid_on(first_day)
            tariff.check_valid_on(last_day)
            thin = thin_bands(tariff, first_day, (last_day - first_day).days + 1, tz, interval)
        except (TariffError, ValueError):
            raise ISOException(SW.CONDITIONS_NOT_SATISFIED, "tariff does not cover the period") from None
        if thin:  # a band of chosen days (listed holidays, a season begun on a chosen day)
            raise ISOException(SW.WRONG_DATA, f"outside the release policy: band {thin[0]} occurs on too few days")
        parts = self._banded_parts(tariff, ids, held)
        if not missing:
            out = parts[0].to_json().encode()  # the period whole: a plain v3 statement
        else:  # the held runs, one v3 statement each, and the missing days (docs/formats.md)
            out = BillParts(first_day, last_day, tuple(parts), tuple(missing)).to_json().encode()
        return self.guard.commit(
            "bill", first_day, last_day, request, out, functionals=sum(len(p.bands) for p in parts), chunked=False
        )

    def _banded_parts(self, tariff: Tariff, ids: tuple[str, str],
                      held: list[tuple[date, date, int, bytes]]) -> list[BandedBillStatement]:
        """One v3 statement per run of held days (each counts one functional per band)."""
        meter_id, tz, interval, _ = self.rs.pairing()
        try:
            parts = [
                issue_statement(
                    BillJob(
                        meter_id=meter_id, tariff=tariff, period_from=d0, period_to=d1, first_index=idx,
                        openings=openings_from_blob(blob), tz=tz, interval_minutes=interval,
                        metering_point=ids[0], contract_id=ids[1],
                    )
                )
                for d0, d1, idx, blob in held
            ]
        except (TariffError, ValueError):
            raise ISOException(SW.CONDITIONS_NOT_SATISFIED, "tariff does not cover the period") from None
        if not all(isinstance(p, BandedBillStatement) for p in parts):  # the time-of-use engine issues v3
            raise ISOException(SW.CONDITIONS_NOT_SATISFIED, "per-band energy needs a time-of-use tariff")
        return [p for p in parts if isinstance(p, BandedBillStatement)]

    def _banded_correction(self, request: bytes, tariff: Tariff, ids: tuple[str, str], first_day: date,
                           last_day: date) -> bytes:
        """GET BANDED BILL P1 ``01``: the one correction of a bill that listed missing days,
        with a v3 statement for each run of those days that has arrived since."""
        again = self.guard.begin_correction("bill", first_day, last_day, request)
        if again is not None:
            return again
        released = self.guard.released("bill", first_day)
        try:
            orig = BillParts.from_json(released[1])
        except (FormatError, TypeError):
            raise ISOException(SW.CONDITIONS_NOT_SATISFIED, "the released bill has no missing days to correct") from None
        if orig.parts[0].metering_point != ids[0] or orig.parts[0].contract_id != ids[1]:
            raise ISOException(SW.WRONG_DATA, "a correction names the corrected bill's metering point and contract")
        arrived: list[tuple[date, date, int, bytes]] = []
        still: list[tuple[date, date]] = []
        for a, b in orig.missing:
            held, missing = self.rs.runs(a, b)
            arrived += held
            still += missing
        if not arrived:
            raise ISOException(SW.REFERENCED_DATA_NOT_FOUND, "none of the missing days has arrived")
        parts = self._banded_parts(tariff, ids, arrived)
        out = BillParts(first_day, last_day, tuple(parts), tuple(still), corrects=released[0]).to_json().encode()
        return self.guard.commit_correction(
            "bill", first_day, last_day, request, out, functionals=sum(len(p.bands) for p in parts)
        )

    def _compute_bill(self, raw: bytes, meter_id: str, tz: str, interval: int, first_day: date,
                      last_day: date) -> bytes:
        """The statement of the tariff's kind (:func:`meterhub.model.billing.issue_statement`)
        from the stored openings: v1 for a time-of-use tariff, v2 with its zero-knowledge
        proofs for a non-linear one (Rial and Danezis, WPES 2011, section 4)."""
        tariff = self._tariff(raw)
        first_index, blob = self.rs.period(first_day, last_day)
        try:
            tariff.check_valid_on(first_day)
            tariff.check_valid_on(last_day)
            st = issue_statement(
                BillJob(
                    meter_id=meter_id, tariff=tariff, period_from=first_day, period_to=last_day,
                    first_index=first_index or 0, openings=OpeningUnits(blob), tz=tz,
                    interval_minutes=interval,
                )
            )
        except (TariffError, ValueError):
            raise ISOException(
                SW.CONDITIONS_NOT_SATISFIED, "tariff does not cover the period or the stored readings"
            ) from None
        return st.to_json().encode()


register_applet_class(CLASS_NAME, BillingApplet)
