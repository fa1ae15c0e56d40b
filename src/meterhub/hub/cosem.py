"""The hub answers its recipients in COSEM: a bill statement as COSEM objects.

docs/architecture.md step 5: the hub releases digested results. Here a
:class:`~meterhub.model.formats.statements.BillStatement` becomes COSEM attributes (Blue Book
DLMS UA 1000-1 Ed. 15) that any DLMS client can GET from the hub's logical
device over a public association (Green Book 1000-2 Ed. 9 §9.2.5, client SAP 16):

========================  =====  ==============================================
OBIS                      IC     attribute 2 (value) [, attribute 3]
========================  =====  ==============================================
0.128.97.0.0.255          1      statement descriptor, ``structure(11)`` below
0.128.97.1.0.255          3      total, long64, sub-units; scaler_unit {-k, 10}
0.128.97.1.1.255          3      energy charge ``sum t_i*m_i``, same scaler_unit
0.128.97.1.2.255          3      standing charge, same scaler_unit
0.128.97.2.0.255          1      blinding ``R = sum t_i*r_i mod Q``, octet-string(32)
0.128.97.3.0.255          1      proofs, array of octet-string (empty: linear tariff)
========================  =====  ==============================================

Register (IC 3, Blue Book §4.3.2): value * 10^scaler is the amount in the
currency's main unit; unit 10 is "currency (local currency)" of the unit table
(Blue Book §4.3.2, Table 4: 10 = currency). So a tariff with 10^6 sub-units per
euro gives scaler -6. IC 111 Account (Blue Book §4.6.2) was not used: its amounts
are double-long (32 bits), which overflow at 2,147 EUR in micro-euros, and it
models a prepayment account rather than a bill for a closed period.

B = 128 is the manufacturer-specific range (Blue Book §7.3.4.3); the meter uses
C = 96, the hub C = 97. Layouts are in docs/formats.md, "Protocols".
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date

from ..crypto.group import Q
from ..errors import MeterhubError
from ..model.formats.statements import STATEMENT_FORMAT, BillStatement
from ..protocols.dlms import axdr
from ..protocols.dlms.client import DlmsLinkClient, DlmsLinkError, Transport
from ..protocols.dlms.cosem import (
    ASSOCIATION_LN,
    IC_DATA,
    IC_REGISTER,
    AssociationLN,
    CosemObject,
    InMemoryDataSource,
    Obis,
)
from ..protocols.dlms.server import DlmsServer

__all__ = [
    "CosemFormatError",
    "STATEMENT",
    "BILL_TOTAL",
    "BILL_ENERGY",
    "BILL_STANDING",
    "BILL_BLINDING",
    "BILL_PROOFS",
    "UNIT_CURRENCY",
    "STATEMENT_ATTRIBUTES",
    "encode_statement",
    "decode_statement",
    "statement_server",
    "read_statement",
]

STATEMENT = Obis(0, 128, 97, 0, 0)
BILL_TOTAL = Obis(0, 128, 97, 1, 0)
BILL_ENERGY = Obis(0, 128, 97, 1, 1)
BILL_STANDING = Obis(0, 128, 97, 1, 2)
BILL_BLINDING = Obis(0, 128, 97, 2, 0)
BILL_PROOFS = Obis(0, 128, 97, 3, 0)
#: Blue Book §4.3.2, Table 4 (unit enumeration): 10 = currency (local currency).
UNIT_CURRENCY = 10

#: Every attribute a recipient reads, as ``(class id, logical name, attribute)``.
STATEMENT_ATTRIBUTES: tuple[tuple[int, bytes, int], ...] = (
    (IC_DATA, STATEMENT, 2),
    (IC_REGISTER, BILL_TOTAL, 2),
    (IC_REGISTER, BILL_TOTAL, 3),
    (IC_REGISTER, BILL_ENERGY, 2),
    (IC_REGISTER, BILL_ENERGY, 3),
    (IC_REGISTER, BILL_STANDING, 2),
    (IC_REGISTER, BILL_STANDING, 3),
    (IC_DATA, BILL_BLINDING, 2),
    (IC_DATA, BILL_PROOFS, 2),
)


class CosemFormatError(MeterhubError, ValueError):
    """A statement that cannot be expressed in, or read back from, these objects."""


def _date(d: date) -> bytes:
    """COSEM ``date`` as octet-string(5) (Blue Book §4.1.6.1): year, month, day, weekday."""
    return d.year.to_bytes(2, "big") + bytes([d.month, d.day, d.isoweekday()])


def _undate(raw: object) -> date:
    if not isinstance(raw, bytes) or len(raw) != 5:
        raise CosemFormatError("a date is an octet-string of 5")
    try:
        d = date(int.from_bytes(raw[:2], "big"), raw[2], raw[3])
    except ValueError as exc:
        raise CosemFormatError(f"bad date: {exc}") from None
    if raw[4] != d.isoweekday():
        raise CosemFormatError("date and day of week disagree")
    return d


def _scaler(subunits: int) -> int:
    k = 0
    n = subunits
    while n > 1 and n % 10 == 0:
        n //= 10
        k += 1
    if n != 1 or k > 127:
        raise CosemFormatError(f"{subunits} sub-units per unit is not a power of ten a Register scaler can express")
    return -k


def encode_statement(st: BillStatement, proofs: tuple[bytes, ...] = ()) -> dict[tuple[int, bytes, int], bytes]:
    """The A-XDR ``Data`` of every attribute in :data:`STATEMENT_ATTRIBUTES`."""
    try:
        currency = axdr.visible_string(st.currency)
    except UnicodeEncodeError:
        raise CosemFormatError("currency must be an ASCII code (ISO 4217)") from None
    scaler_unit = axdr.structure([axdr.integer(_scaler(st.subunits_per_unit)), axdr.enum(UNIT_CURRENCY)])
    try:
        descriptor = axdr.structure(
            [
                axdr.visible_string(STATEMENT_FORMAT),
                axdr.octet_string(st.meter_id.encode()),
                axdr.octet_string(_date(st.period_from)),
                axdr.octet_string(_date(st.period_to)),
                axdr.long64_unsigned(st.first_index),
                axdr.double_long_unsigned(st.count),
                axdr.octet_string(st.tariff_id.encode()),
                axdr.double_long_unsigned(st.tariff_version),
                axdr.octet_string(st.tariff_digest),
                currency,
                axdr.double_long_unsigned(st.subunits_per_unit),
            ]
        )
        amounts = {ln: axdr.long64(v) for ln, v in ((BILL_TOTAL, st.total), (BILL_ENERGY, st.energy_charge), (BILL_STANDING, st.standing_charge))}
    except ValueError as exc:  # a value outside its COSEM type's range
        raise CosemFormatError(str(exc)) from None
    out: dict[tuple[int, bytes, int], bytes] = {(IC_DATA, STATEMENT, 2): descriptor}
    for ln, value in amounts.items():
        out[(IC_REGISTER, ln, 2)] = value
        out[(IC_REGISTER, ln, 3)] = scaler_unit
    out[(IC_DATA, BILL_BLINDING, 2)] = axdr.octet_string(st.blinding.to_bytes(32, "big"))
    out[(IC_DATA, BILL_PROOFS, 2)] = axdr.array([axdr.octet_string(p) for p in proofs])
    return out


def _int(v: object, what: str) -> int:
    if not isinstance(v, int) or isinstance(v, bool):
        raise CosemFormatError(f"{what} must be an integer")
    return v


def decode_statement(attrs: Mapping[tuple[int, bytes, int], bytes]) -> tuple[BillStatement, tuple[bytes, ...]]:
    """Inverse of :func:`encode_statement`: ``(statement, proofs)``; strict."""
    try:
        v = {k: axdr.decode(attrs[k]) for k in STATEMENT_ATTRIBUTES}
    except KeyError as exc:
        raise CosemFormatError(f"attribute {exc.args[0]!r} missing") from None
    except axdr.AxdrError as exc:
        raise CosemFormatError(f"not A-XDR: {exc}") from None
    d = v[(IC_DATA, STATEMENT, 2)]
    if not isinstance(d, list) or len(d) != 11:
        raise CosemFormatError("statement descriptor is a structure of 11")
    if d[0] != STATEMENT_FORMAT:
        raise CosemFormatError(f"unknown statement format {d[0]!r}")
    for i in (1, 6, 8):
        if not isinstance(d[i], bytes):
            raise CosemFormatError(f"descriptor element {i} must be an octet-string")
    if not isinstance(d[9], str):
        raise CosemFormatError("currency must be a visible-string")
    subunits = _int(d[10], "subunits_per_unit")
    expected = [_scaler(subunits) if subunits > 0 else None, UNIT_CURRENCY]
    for ln in (BILL_TOTAL, BILL_ENERGY, BILL_STANDING):
        if v[(IC_REGISTER, ln, 3)] != expected:
            raise CosemFormatError("scaler_unit does not match the currency's sub-units")
    blinding = v[(IC_DATA, BILL_BLINDING, 2)]
    if not isinstance(blinding, bytes) or len(blinding) != 32 or int.from_bytes(blinding, "big") >= Q:
        raise CosemFormatError("blinding must be a 32-byte scalar below the group order")
    proofs = v[(IC_DATA, BILL_PROOFS, 2)]
    if not isinstance(proofs, list) or not all(isinstance(p, bytes) for p in proofs):
        raise CosemFormatError("proofs must be an array of octet-strings")
    if len(d[8]) != 32:
        raise CosemFormatError("tariff digest must be 32 bytes")
    try:
        meter_id, tariff_id = d[1].decode(), d[6].decode()
    except UnicodeDecodeError:
        raise CosemFormatError("meter and tariff ids must be UTF-8") from None
    pf, pt = _undate(d[2]), _undate(d[3])
    if pt < pf:
        raise CosemFormatError("bill period ends before it starts")
    st = BillStatement(
        meter_id=meter_id,
        period_from=pf,
        period_to=pt,
        first_index=_int(d[4], "first_index"),
        count=_int(d[5], "count"),
        tariff_id=tariff_id,
        tariff_version=_int(d[7], "tariff_version"),
        tariff_digest=d[8],
        currency=d[9],
        subunits_per_unit=subunits,
        energy_charge=_int(v[(IC_REGISTER, BILL_ENERGY, 2)], "energy charge"),
        standing_charge=_int(v[(IC_REGISTER, BILL_STANDING, 2)], "standing charge"),
        total=_int(v[(IC_REGISTER, BILL_TOTAL, 2)], "total"),
        blinding=int.from_bytes(blinding, "big"),
    )
    return st, tuple(proofs)


class _Fixed(CosemObject):
    """An object whose attributes are fixed encoded ``Data``."""

    def __init__(self, class_id: int, logical_name: bytes, values: dict[int, bytes]) -> None:
        super().__init__(logical_name)
        self.class_id = class_id
        self._values = values

    def _attributes(self):  # type: ignore[override]
        return {a: (lambda raw=raw: raw) for a, raw in self._values.items()}


def statement_server(st: BillStatement, proofs: tuple[bytes, ...] = (), *, max_pdu_size: int = 1024) -> DlmsServer:
    """The hub's logical device publishing one statement to public clients (SAP 16).

    No keys are configured, so management associations are refused; the bill is
    the recipient's own and carries no reading (its checks are the utility's).
    """
    server = DlmsServer(InMemoryDataSource(meter_id="hub"), max_pdu_size=max_pdu_size)
    grouped: dict[tuple[int, bytes], dict[int, bytes]] = {}
    for (ic, ln, attr), raw in encode_statement(st, proofs).items():
        grouped.setdefault((ic, ln), {})[attr] = raw
    objects: dict[bytes, CosemObject] = {ASSOCIATION_LN: AssociationLN(ASSOCIATION_LN)}
    for (ic, ln), values in grouped.items():
        objects[ln] = _Fixed(ic, ln, values)
    server.objects = objects
    # This logical device exists to publish the statement: all of it is public.
    server.public_objects = frozenset(objects)
    return server


def read_statement(transport: Transport) -> tuple[BillStatement, tuple[bytes, ...]]:
    """Associate as the public client, GET every statement attribute, release, decode.

    Raises :class:`CosemFormatError` (bad content) or
    :class:`~meterhub.protocols.dlms.client.DlmsLinkError` (refused, bad answer)."""
    client = DlmsLinkClient(transport)
    client.associate()
    try:
        attrs = {k: client.get(*k) for k in STATEMENT_ATTRIBUTES}
    finally:
        try:
            client.release()
        except DlmsLinkError:
            pass
    return decode_statement(attrs)
