"""The hub's secure element as the demo and the CLI run it.

A hub is a :class:`~meterhub.card.Card` with a GlobalPlatform card manager: the
issuer security domain (the hub maker's keys) and one supplementary security
domain per data recipient, here the supplier, with its own SCP03 keys and DAP
key. The supplier's TSM (:mod:`meterhub.utility.tsm`) installs the billing
applet from a DAP-signed package and pushes the signed tariff with STORE DATA;
the hub's host software pairs the meter, feeds each day's openings and reads
bills through :class:`BillingClient`.

The demo keys below are derived from public strings: they are **publicly
known** and serve demos and tests only.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path

from ..applets.billing import CLASS_NAME as BILLING_CLASS
from ..applets.billing import encode_openings_day, encode_pairing
from ..card import Card
from ..card.applet import Applet, applet_class
from ..card.gp import ISD_AID, StaticKeys, make_load_file, open_card, provision_isd, provision_ssd
from ..card.guard import GUARD_AID, Pinned, pinned_points, provision_guard
from ..card.store import STORAGE_KEY_SUFFIX
from ..card.vault import VAULT_AID, provision_vault
from ..crypto import ecdsa
from ..crypto.pedersen import Opening
from ..model.aids import (  # one AID plan, shared with the utility's verifiers
    BILLING_APP_AID,
    BILLING_MODULE_AID,
    BILLING_PACKAGE_AID,
    EXPORT_APP_AID,
    EXPORT_MODULE_AID,
    EXPORT_PACKAGE_AID,
    GRID_OPERATOR_SD_AID,
    PROFILING_APP_AID,
    PROFILING_MODULE_AID,
    PROFILING_PACKAGE_AID,
    SETTLEMENT_APP_AID,
    SETTLEMENT_MODULE_AID,
    SETTLEMENT_PACKAGE_AID,
    SUPPLIER_SD_AID,
    THIRD_PARTY_SD_AID,
)
from ..model.demo_keys import demo_vtn_key, party_secret, party_signing_key
from ..model.errors import FormatError
from ..model.formats.bill_parts import BillParts
from ..model.formats.statements import BandedBillStatement, BillStatement
from ..policy import (
    DEFAULT_POLICY,
    LogEntry,
    ReleasePolicy,
    SignedPolicy,
    dump_policy,
    load_policy,
    sign_policy,
)
from ..policy import refusal_reason as _refusal_reason
from ..protocols.iso7816 import CommandAPDU, ResponseAPDU
from .proving import ProvenBillStatement, statement_from_json
from .store import HubError

__all__ = [
    "SUPPLIER_SD_AID",
    "GRID_OPERATOR_SD_AID",
    "THIRD_PARTY_SD_AID",
    "RECIPIENT_SDS",
    "BILLING_PACKAGE_AID",
    "BILLING_MODULE_AID",
    "BILLING_APP_AID",
    "demo_scp03_keys",
    "demo_dap_key",
    "billing_load_file",
    "open_hub_card",
    "BillingClient",
    "SETTLEMENT_PACKAGE_AID",
    "SETTLEMENT_MODULE_AID",
    "SETTLEMENT_APP_AID",
    "PROFILING_PACKAGE_AID",
    "PROFILING_MODULE_AID",
    "PROFILING_APP_AID",
    "settlement_load_file",
    "profiling_load_file",
    "ReadingsClient",
    "GuardClient",
    "EXPORT_APP_AID",
    "export_load_file",
    "customer_key_path",
    "VaultClient",
    "open_vault_card",
    "demo_pinned",
    "demo_vtn_key",
]

#: The data recipients that get a supplementary security domain on every hub.
RECIPIENT_SDS = {
    "supplier": SUPPLIER_SD_AID,
    "grid-operator": GRID_OPERATOR_SD_AID,
    "third-party": THIRD_PARTY_SD_AID,
}
_demo_secret = party_secret  # the demo card parties' public secrets (meterhub.model.demo_keys)


def demo_scp03_keys(party: str, kvn: int = 0x30) -> StaticKeys:
    """AES-128 SCP03 keys for ``party`` ("issuer", "supplier", ...), derived from a public
    string. Demo only."""
    s = _demo_secret("scp03/" + party)
    t = _demo_secret("scp03-dek/" + party)
    return StaticKeys(kvn, s[:16], s[16:], t[:16])


def demo_dap_key(party: str) -> ecdsa.SigningKey:
    """A P-256 DAP signing key for ``party`` from a public string. Demo only."""
    return party_signing_key("dap/" + party)


def registered_class(name: str) -> type[Applet]:
    """The applet class registered as ``name`` (the applets package registers them on import)."""
    cls = applet_class(name)
    if cls is None:  # pragma: no cover - the applets package registers it on import
        raise RuntimeError(f"{name} applet class is not registered")
    return cls


def billing_load_file() -> bytes:
    """The billing applet's package (Load File Data Block), unsigned; the TSM adds the DAP."""
    return make_load_file(BILLING_PACKAGE_AID, {BILLING_MODULE_AID: registered_class(BILLING_CLASS)})


def settlement_load_file() -> bytes:
    """The settlement applet's package, unsigned (the supplier's TSM adds the DAP)."""
    from ..applets.settlement import CLASS_NAME

    return make_load_file(SETTLEMENT_PACKAGE_AID, {SETTLEMENT_MODULE_AID: registered_class(CLASS_NAME)})


def profiling_load_file() -> bytes:
    """The profiling applet's package, unsigned (the forecasting party's TSM adds the DAP)."""
    from ..applets.profiling import CLASS_NAME

    return make_load_file(PROFILING_PACKAGE_AID, {PROFILING_MODULE_AID: registered_class(CLASS_NAME)})


#: Beside a hub card file: the customer key :func:`open_hub_card` created.
CUSTOMER_KEY_SUFFIX = ".customer.pem"
#: The files kept beside a hub card file under its name (its storage key, the customer
#: key); they move with it (:func:`meterhub.storage.sqlite.install_built_file`).
CARD_SIDECARS = (STORAGE_KEY_SUFFIX, CUSTOMER_KEY_SUFFIX)


def customer_key_path(card_path: str | Path) -> Path:
    """Where :func:`open_hub_card` keeps a customer key it created (next to the card file)."""
    return Path(str(card_path) + CUSTOMER_KEY_SUFFIX)


def demo_pinned() -> Pinned:
    """The publisher keys a demo customer pins: the (demo) price-index publisher, the
    neutral reference-profile publisher that signs the BDEW profiles, the supplier's
    tariff signer, the grid operator's group-signing key (``group/grid-operator``:
    aggregation groups for fraud detection), which also signs its own suspect profiles
    (``load-profile/grid-operator``), and the grid operator's OpenADR VTN event key
    (:func:`demo_vtn_key`), and the demo card issuer's member-certifier key
    (``member-cert/grid-operator``: who vouches for the members of the grid operator's
    groups, docs/fraud.md). All are publicly known demo keys."""
    from ..model.formats.aggregation import demo_group_key
    from ..model.formats.membership import demo_member_certifier_key
    from ..tariffs import demo_supplier_key
    from ..tariffs.price_index import demo_index_publisher_key
    from ..tariffs.profiles import demo_profile_key

    return Pinned(
        price_index=pinned_points([demo_index_publisher_key()]),
        load_profile=pinned_points([demo_profile_key()]),
        tariff={"supplier": pinned_points([demo_supplier_key()])},
        own_profile={"grid-operator": pinned_points([demo_group_key()])},
        group={"grid-operator": pinned_points([demo_group_key()])},
        dr_event={"grid-operator": pinned_points([demo_vtn_key()])},
        member_cert={"grid-operator": pinned_points([demo_member_certifier_key()])},
    )


def _customer_key(path: Path, key: ecdsa.SigningKey | None) -> ecdsa.SigningKey:
    """The customer's P-256 key: the one given, else a fresh one written 0600 next to the card."""
    if key is not None:
        return key
    from ..storage.sqlite import write_secret

    key = ecdsa.generate_signing_key()
    write_secret(customer_key_path(path), ecdsa.signing_key_pem(key))  # 0600, whole or not at all
    return key


def export_load_file() -> bytes:
    """The export applet's package, unsigned (the recipient's TSM adds the DAP)."""
    from ..applets.export import CLASS_NAME

    return make_load_file(EXPORT_PACKAGE_AID, {EXPORT_MODULE_AID: registered_class(CLASS_NAME)})


def open_hub_card(
    path: str | Path,
    *,
    issuer_keys: StaticKeys,
    supplier_keys: StaticKeys,
    supplier_dap: ecdsa.VerifyingKey,
    other_recipients: dict[str, tuple[StaticKeys, ecdsa.VerifyingKey]] | None = None,
    customer_key: ecdsa.SigningKey | None = None,
    policy: ReleasePolicy | None = None,
    pinned: Pinned | None = None,
) -> Card:
    """Open a hub's card, provisioning on first use its ISD, one supplementary
    security domain per data recipient (the supplier's, and those named in
    ``other_recipients``; default: the grid operator and a third party, with their
    demo keys), each with its own SCP03 keys and DAP key, and the privacy guard with the
    customer's key (created here unless given: :func:`customer_key_path`), the pinned
    publisher keys (default :func:`demo_pinned`) and the customer-signed release policy
    (default: :data:`meterhub.policy.DEFAULT_POLICY`, calendar months)."""
    if other_recipients is None:
        other_recipients = {
            name: (demo_scp03_keys(name), demo_dap_key(name).public_key())
            for name in RECIPIENT_SDS
            if name != "supplier"
        }
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    card = open_card(str(path))
    if card.registry.get(ISD_AID) is None:
        provision_isd(card, [issuer_keys])
    wanted = {SUPPLIER_SD_AID: (supplier_keys, supplier_dap)}
    for name, (keys, dap) in other_recipients.items():
        if name not in RECIPIENT_SDS:
            raise ValueError(f"unknown data recipient {name!r}")
        wanted[RECIPIENT_SDS[name]] = (keys, dap)
    for aid, (keys, dap) in wanted.items():
        if card.registry.get(aid) is None:
            provision_ssd(card, aid, [keys], dap_key=dap)
    provision_vault(card, isd_aid=ISD_AID)  # the host's record key (docs/privacy.md); cards before it get it now
    if card.registry.get(GUARD_AID) is None:
        key = _customer_key(Path(path), customer_key)
        provision_guard(
            card,
            customer_key=key.public_key(),
            pinned=pinned or demo_pinned(),
            recipients={aid: name for name, aid in RECIPIENT_SDS.items()},
            policy=sign_policy(policy or DEFAULT_POLICY, key),
            isd_aid=ISD_AID,
        )
    card.power_on()
    return card


class BillingClient:
    """The hub host's side of the billing applet (commands in :mod:`meterhub.applets.billing`)."""

    def __init__(self, transmit: Callable[[bytes], bytes], app_aid: str = BILLING_APP_AID) -> None:
        self._transmit = transmit
        self.app_aid = bytes.fromhex(app_aid)

    def _send(self, apdu: CommandAPDU) -> ResponseAPDU:
        return ResponseAPDU.from_bytes(self._transmit(apdu.to_bytes()))

    def _cmd(self, ins: int, data: bytes = b"", p1: int = 0, le: int | None = None) -> bytes:
        ext = len(data) > 255 or (le or 0) > 256
        r = self._send(CommandAPDU(0x80, ins, p1, 0, data, le=le, extended=ext))
        if r.sw != 0x9000:
            raise HubError(f"billing applet (INS {ins:02X}) refused: {_refusal_reason(r.sw)} (SW {r.sw:04X})")
        return r.data

    def select(self) -> None:
        r = self._send(CommandAPDU(0x00, 0xA4, 0x04, 0x00, self.app_aid, le=256))
        if r.sw != 0x9000:
            raise HubError(f"SELECT billing applet refused: {_refusal_reason(r.sw)} (SW {r.sw:04X})")

    def pair(self, meter_id: str, tz: str, interval_minutes: int, home_link_key: bytes) -> bool:
        """Pair the meter; False if the applet was already paired with this meter."""
        r = self._send(
            CommandAPDU(0x80, 0x10, 0, 0, encode_pairing(meter_id, tz, interval_minutes, home_link_key))
        )
        if r.sw == 0x6985:
            return False
        if r.sw != 0x9000:
            raise HubError(f"PAIR METER refused: {_refusal_reason(r.sw)} (SW {r.sw:04X})")
        return True

    def put_openings(self, day: date, first_index: int, openings: Sequence[Opening]) -> None:
        self._cmd(0x20, encode_openings_day(day, first_index, openings), p1=0x01)

    def put_day(self, sealed_day: bytes) -> None:
        """PUT DAY P1 ``00``: a day sealed by the meter (``applets.readings.encode_day``)."""
        self._cmd(0x20, sealed_day, p1=0x00)

    def put_tariff(self, signed_tariff: bytes) -> None:
        """PUT TARIFF: the supplier's signed tariff file; the card checks the signer it
        pinned and the release policy's tariff limits."""
        self._cmd(0x12, signed_tariff)

    def state(self) -> tuple[int, date | None]:
        raw = self._cmd(0x32, le=256)
        nxt = int.from_bytes(raw[:8], "big")
        if len(raw) >= 12:
            y, m, d = struct.unpack(">HBB", raw[8:12])
            return nxt, date(y, m, d)
        return nxt, None

    def bill(self, first: date, last: date) -> BillStatement | ProvenBillStatement:
        """GET BILL: a v1 statement for a time-of-use tariff, a v2 (proven) one for a
        non-linear tariff; answers longer than 64 KiB are collected from their
        ``61xx`` chunks with GET RESPONSE (ISO/IEC 7816-4)."""
        data = struct.pack(">HBBHBB", first.year, first.month, first.day, last.year, last.month, last.day)
        r = self._send(CommandAPDU(0x80, 0x30, 0, 0, data, le=65536, extended=True))
        raw = r.data
        while r.sw >> 8 == 0x61:
            r = self._send(CommandAPDU(0x00, 0xC0, 0, 0, b"", le=65536, extended=True))
            raw += r.data
        if r.sw != 0x9000:
            raise HubError(f"billing applet refused the bill: {_refusal_reason(r.sw)} (SW {r.sw:04X})")
        try:
            st = statement_from_json(raw)
        except FormatError as exc:
            raise HubError(f"billing applet returned a malformed statement: {exc}") from None
        if isinstance(st, BandedBillStatement):  # GET BANDED BILL is its own command
            raise HubError("billing applet answered GET BILL with a banded statement")
        return st


    def banded_bill(self, first: date, last: date, metering_point: str, contract_id: str) -> BandedBillStatement:
        """GET BANDED BILL: the v3 statement with energy per tariff band (docs/formats.md)."""
        mp, ct = metering_point.encode("ascii"), contract_id.encode("ascii")
        if len(mp) > 255 or len(ct) > 255:
            raise HubError("metering point or contract id too long")
        data = struct.pack(">HBBHBB", first.year, first.month, first.day, last.year, last.month, last.day)
        data += bytes([len(mp)]) + mp + bytes([len(ct)]) + ct
        r = self._send(CommandAPDU(0x80, 0x34, 0, 0, data, le=65536, extended=True))
        if r.sw != 0x9000:
            raise HubError(f"billing applet refused the bill: {_refusal_reason(r.sw)} (SW {r.sw:04X})")
        try:
            return BandedBillStatement.from_json(r.data)
        except FormatError as exc:
            raise HubError(f"billing applet returned a malformed statement: {exc}") from None


    def banded_bill_parts(self, first: date, last: date, metering_point: str, contract_id: str, *,
                          correction: bool = False) -> BillParts:
        """GET BANDED BILL (P1 ``00``) or its correction (P1 ``01``) as bill parts: a period
        with missing days comes as a v3 statement per held run and the missing runs; a
        whole period's plain v3 statement is returned as one part (docs/formats.md)."""
        mp, ct = metering_point.encode("ascii"), contract_id.encode("ascii")
        if len(mp) > 255 or len(ct) > 255:
            raise HubError("metering point or contract id too long")
        data = struct.pack(">HBBHBB", first.year, first.month, first.day, last.year, last.month, last.day)
        data += bytes([len(mp)]) + mp + bytes([len(ct)]) + ct
        r = self._send(CommandAPDU(0x80, 0x34, 0x01 if correction else 0x00, 0, data, le=65536, extended=True))
        if r.sw != 0x9000:
            what = "correction" if correction else "bill"
            raise HubError(f"billing applet refused the {what}: {_refusal_reason(r.sw)} (SW {r.sw:04X})")
        try:
            if b'"format":"meterhub/bill-parts/v1"' in r.data:
                return BillParts.from_json(r.data)
            st = BandedBillStatement.from_json(r.data)
        except FormatError as exc:
            raise HubError(f"billing applet returned a malformed statement: {exc}") from None
        return BillParts(st.period_from, st.period_to, (st,), ())


class ReadingsClient:
    """The hub host's side of the settlement and profiling applets: pairing and each day's
    openings over the plain channel (their outputs go only to their security domains)."""

    def __init__(self, transmit: Callable[[bytes], bytes], app_aid: str) -> None:
        self._transmit = transmit
        self.app_aid = bytes.fromhex(app_aid)

    def _send(self, apdu: CommandAPDU) -> ResponseAPDU:
        return ResponseAPDU.from_bytes(self._transmit(apdu.to_bytes()))

    def select(self) -> None:
        r = self._send(CommandAPDU(0x00, 0xA4, 0x04, 0x00, self.app_aid, le=256))
        if r.sw != 0x9000:
            raise HubError(f"SELECT {self.app_aid.hex().upper()} refused: {_refusal_reason(r.sw)} (SW {r.sw:04X})")

    def pair(self, meter_id: str, tz: str, interval_minutes: int) -> bool:
        """Pair the meter; False if already paired."""
        from ..applets.settlement import encode_pairing as pairing

        r = self._send(CommandAPDU(0x80, 0x10, 0, 0, pairing(meter_id, tz, interval_minutes)))
        if r.sw == 0x6985:
            return False
        if r.sw != 0x9000:
            raise HubError(f"PAIR METER refused: {_refusal_reason(r.sw)} (SW {r.sw:04X})")
        return True

    def put_openings(self, day: date, first_index: int, openings: Sequence[Opening]) -> None:
        data = encode_openings_day(day, first_index, openings)
        r = self._send(CommandAPDU(0x80, 0x20, 0x01, 0, data, extended=len(data) > 255))
        if r.sw != 0x9000:
            raise HubError(f"PUT DAY {day} refused: {_refusal_reason(r.sw)} (SW {r.sw:04X})")


class GuardClient:
    """The customer's side of the privacy guard (plain channel; commands in
    :mod:`meterhub.card.guard`): the policy, the pinned keys and the release log."""

    def __init__(self, transmit: Callable[[bytes], bytes]) -> None:
        self._transmit = transmit

    def _cmd(self, ins: int, data: bytes = b"") -> bytes:
        r = ResponseAPDU.from_bytes(
            self._transmit(CommandAPDU(0x80, ins, 0, 0, data, le=65536, extended=True).to_bytes())
        )
        raw = r.data
        while r.sw >> 8 == 0x61:
            r = ResponseAPDU.from_bytes(
                self._transmit(CommandAPDU(0x00, 0xC0, 0, 0, b"", le=65536, extended=True).to_bytes())
            )
            raw += r.data
        if r.sw != 0x9000:
            raise HubError(f"privacy guard refused INS {ins:02X}: {_refusal_reason(r.sw)} (SW {r.sw:04X})")
        return raw

    def select(self) -> None:
        r = ResponseAPDU.from_bytes(
            self._transmit(CommandAPDU(0x00, 0xA4, 0x04, 0x00, bytes.fromhex(GUARD_AID), le=256).to_bytes())
        )
        if r.sw != 0x9000:
            raise HubError(f"SELECT privacy guard refused: {_refusal_reason(r.sw)} (SW {r.sw:04X})")

    def policy(self) -> SignedPolicy:
        return load_policy(self._cmd(0x40))

    def set_policy(self, signed: SignedPolicy) -> None:
        self._cmd(0x42, dump_policy(signed))

    def pinned(self) -> dict[str, object]:
        import json

        out: dict[str, object] = json.loads(self._cmd(0x48))
        return out

    def head(self) -> tuple[int, bytes]:
        raw = self._cmd(0x44)
        return int.from_bytes(raw[:4], "big"), raw[4:36]

    def raw_entries(self) -> list[bytes]:
        count, _ = self.head()
        return [self._cmd(0x46, n.to_bytes(4, "big")) for n in range(count)]

    def entries(self) -> list[LogEntry]:
        return [LogEntry.from_bytes(raw) for raw in self.raw_entries()]

    def add_consent(self, signed_consent: bytes) -> None:
        """ADD CONSENT (a consent file signed by the customer's key)."""
        self._cmd(0x50, signed_consent)

    def revoke_consent(self, signed_revocation: bytes) -> None:
        """REVOKE CONSENT (a revocation signed by the customer's key)."""
        self._cmd(0x52, signed_revocation)

    def release(self, seq: int) -> bytes:
        """The bytes released (or, for a policy entry, the signed policy) at ``seq``."""
        return self._cmd(0x4A, seq.to_bytes(4, "big"))


class VaultClient:
    """The hub host's side of the card's storage vault (:mod:`meterhub.card.vault`): seals
    and opens ``hub.sqlite`` records (:class:`meterhub.hub.store.RecordVault`) under the
    card's record key, which never leaves the card.

    It works on a logical channel of its own (MANAGE CHANNEL, ISO/IEC 7816-4 §11.1.2), so
    the applet selected on the basic channel (the billing applet the host is feeding)
    stays selected; the channel is opened again after a card reset."""

    def __init__(self, transmit: Callable[[bytes], bytes]) -> None:
        self._transmit = transmit
        self._channel: int | None = None
        self._key_id: bytes | None = None

    def _send(self, apdu: CommandAPDU) -> ResponseAPDU:
        return ResponseAPDU.from_bytes(self._transmit(apdu.to_bytes()))

    def _open_channel(self) -> int:
        r = self._send(CommandAPDU(0x00, 0x70, 0x00, 0x00, le=1))
        if r.sw != 0x9000 or len(r.data) != 1:
            raise HubError(f"the card has no free logical channel for its storage vault (SW {r.sw:04X})")
        ch = r.data[0]
        r = self._send(CommandAPDU(ch, 0xA4, 0x04, 0x00, bytes.fromhex(VAULT_AID), le=256))
        if r.sw != 0x9000:
            self._send(CommandAPDU(ch, 0x70, 0x80, ch))
            raise HubError(f"the card has no storage vault (SW {r.sw:04X}); open it with open_hub_card or open_vault_card")
        return ch

    def _cmd(self, ins: int, data: bytes = b"") -> bytes:
        for attempt in (0, 1):
            if self._channel is None:
                self._channel = self._open_channel()
            ext = len(data) > 255
            r = self._send(CommandAPDU(0x80 | self._channel, ins, 0, 0, data, le=65536 if ext else 256, extended=ext))
            if r.sw in (0x6881, 0x6999, 0x6A82, 0x6985) and attempt == 0:  # the card was reset: channel gone
                self._channel = None
                continue
            if r.sw == 0x6982:
                raise HubError("a record fails authentication (altered, moved, or sealed by another card)")
            if r.sw != 0x9000:
                raise HubError(f"storage vault (INS {ins:02X}) refused: {_refusal_reason(r.sw)} (SW {r.sw:04X})")
            return r.data
        raise AssertionError("unreachable")  # pragma: no cover

    def key_id(self) -> bytes:
        if self._key_id is None:
            self._key_id = self._cmd(0x58)
        return self._key_id

    #: Largest plaintext sealed in one command: an extended APDU carries at most 65,535
    #: bytes (ISO/IEC 7816-4 §5.1), identity and framing included.
    PART = 60_000

    def _seal1(self, identity: bytes, plaintext: bytes) -> bytes:
        return self._cmd(0x54, len(identity).to_bytes(2, "big") + identity + plaintext)

    def _open1(self, identity: bytes, sealed: bytes) -> bytes:
        return self._cmd(0x56, len(identity).to_bytes(2, "big") + identity + bytes(sealed))

    @staticmethod
    def _part(identity: bytes, i: int, n: int) -> bytes:
        return identity + f"\x00part\x00{i}/{n}".encode()

    def seal(self, identity: bytes, plaintext: bytes) -> bytes:
        """A sealed record; larger than :data:`PART`: ``02 || u16 n || (u32 len || part)*n``,
        part ``i`` sealed for ``identity || 00 "part" 00 "i/n"``, so parts cannot be
        reordered, dropped or spliced from another record."""
        if len(plaintext) <= self.PART:
            return self._seal1(identity, plaintext)
        chunks = [plaintext[k : k + self.PART] for k in range(0, len(plaintext), self.PART)]
        n = len(chunks)
        if n > 0xFFFF:
            raise HubError("record too large to seal")
        out = bytearray(b"\x02" + n.to_bytes(2, "big"))
        for i, c in enumerate(chunks):
            part = self._seal1(self._part(identity, i, n), c)
            out += len(part).to_bytes(4, "big") + part
        return bytes(out)

    def open(self, identity: bytes, sealed: bytes) -> bytes:
        sealed = bytes(sealed)
        if sealed[:1] != b"\x02":
            return self._open1(identity, sealed)
        n, pos, out = int.from_bytes(sealed[1:3], "big"), 3, bytearray()
        for i in range(n):
            size = int.from_bytes(sealed[pos : pos + 4], "big")
            part = sealed[pos + 4 : pos + 4 + size]
            if size < 29 or len(part) != size:
                raise HubError("a record fails authentication (truncated)")
            out += self._open1(self._part(identity, i, n), part)
            pos += 4 + size
        if n < 2 or pos != len(sealed):
            raise HubError("a record fails authentication (bad framing)")
        return bytes(out)

    def close(self) -> None:
        """Close the vault's logical channel (the card keeps working on the others)."""
        if self._channel is not None:
            self._send(CommandAPDU(0x00, 0x70, 0x80, self._channel))
            self._channel = None


def open_vault_card(path: str | Path) -> Card:
    """Open the hub card at ``path`` for its storage vault alone (``hub bill`` and tools
    that read ``hub.sqlite`` without applets): a card that does not exist yet is created
    with the vault only (no security domain, so no SCP03 keys, public or not); a hub card
    made by :func:`open_hub_card` is used as it is, its vault added if it predates it."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    card = open_card(str(path))
    provision_vault(card, isd_aid=ISD_AID if card.registry.get(ISD_AID) is not None else None)
    card.power_on()
    return card
