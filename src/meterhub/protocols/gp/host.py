"""Off-card helpers for GlobalPlatform card management (the TSM builds on these).

Two layers, both sans-IO:

* pure functions that build command data fields and parse responses (GPC 2.3.1 ch. 11);
* :class:`GPClient`, a small management session over any ``transmit(bytes) -> bytes``
  (an in-process :class:`~meterhub.card.Card`, vpcd, PC/SC) that opens SCP03
  (Amendment D) with an :class:`~meterhub.protocols.gp.scp03.SCP03HostSession` and sends
  protected commands, following ``61xx`` and GET STATUS ``6310`` continuations.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from ...errors import MeterhubError
from ..iso7816.aid import AID
from ..iso7816.sw import ISOException
from ..iso7816.tlv import TLV, encode_length, find, find_all, parse
from .constants import INS
from .keys import StaticKeys, kcv_aes
from .scp03 import C_MAC, SCP03HostSession

__all__ = [
    "GPClient",
    "GPError",
    "StatusEntry",
    "KeyInfo",
    "install_for_load_data",
    "install_for_install_data",
    "install_for_make_selectable_data",
    "install_for_personalization_data",
    "load_file",
    "load_blocks",
    "delete_data",
    "get_status_data",
    "parse_get_status_response",
    "put_key_data",
    "parse_put_key_response",
    "parse_key_information",
    "select_apdu",
    "dgi_data",
]

GP_CLA = 0x80


class GPError(MeterhubError):
    """A management command answered with an error status word."""

    def __init__(self, what: str, sw: int) -> None:
        super().__init__(f"{what} failed with SW {sw:04X}")
        self.sw = sw


def _lv(value: bytes) -> bytes:
    if len(value) > 0xFF:
        raise ValueError("LV field longer than 255 bytes")
    return bytes((len(value),)) + bytes(value)


def _ber_lv(value: bytes) -> bytes:
    return encode_length(len(value)) + bytes(value)


def _raw(aid: AID | bytes | str | None) -> bytes:
    return b"" if aid is None else AID.of(aid).raw


# --- INSTALL (GPC 2.3.1 §11.5) --------------------------------------------------------
def install_for_load_data(
    elf_aid: AID | bytes | str,
    sd_aid: AID | bytes | str | None = None,
    lfdb_hash: bytes = b"",
    load_params: bytes = b"",
    token: bytes = b"",
) -> bytes:
    """INSTALL [for load] (P1 = 02) data field, Table 11-47."""
    return (
        _lv(_raw(elf_aid))
        + _lv(_raw(sd_aid))
        + _lv(lfdb_hash)
        + _ber_lv(load_params)
        + _ber_lv(token)
    )


def install_for_install_data(
    elf_aid: AID | bytes | str,
    module_aid: AID | bytes | str,
    app_aid: AID | bytes | str,
    privileges: bytes = b"\x00",
    app_params: bytes = b"",
    token: bytes = b"",
) -> bytes:
    """INSTALL [for install (and make selectable)] (P1 = 04 / 0C) data field, Table 11-48.

    ``app_params`` goes into the mandatory ``C9`` application specific parameters.
    """
    params = TLV(0xC9, app_params).to_bytes()
    return (
        _lv(_raw(elf_aid))
        + _lv(_raw(module_aid))
        + _lv(_raw(app_aid))
        + _lv(privileges)
        + _ber_lv(params)
        + _ber_lv(token)
    )


def install_for_make_selectable_data(
    app_aid: AID | bytes | str, privileges: bytes = b"", token: bytes = b""
) -> bytes:
    """INSTALL [for make selectable] (P1 = 08) data field, Table 11-50."""
    return b"\x00\x00" + _lv(_raw(app_aid)) + _lv(privileges) + b"\x00" + _ber_lv(token)


def install_for_personalization_data(app_aid: AID | bytes | str) -> bytes:
    """INSTALL [for personalization] (P1 = 20) data field, Table 11-52."""
    return b"\x00\x00" + _lv(_raw(app_aid)) + b"\x00\x00\x00"


# --- LOAD (GPC 2.3.1 §11.6) -----------------------------------------------------------
def dap_block(sd_aid: AID | bytes | str, signature: bytes) -> bytes:
    """``E2 { 4F SD AID, C3 signature }`` (GPC 2.3.1 Table 11-59)."""
    return TLV.build(0xE2, [TLV(0x4F, AID.of(sd_aid).raw), TLV(0xC3, bytes(signature))]).to_bytes()


def load_file(lfdb: bytes, daps: Iterable[tuple[AID | bytes | str, bytes]] = ()) -> bytes:
    """The Load File as sent by LOAD: DAP blocks ``E2`` then ``C4`` (Table 11-59)."""
    return b"".join(dap_block(sd, sig) for sd, sig in daps) + TLV(0xC4, lfdb).to_bytes()


def load_blocks(load_file_bytes: bytes, block_size: int = 200) -> list[tuple[int, int, bytes]]:
    """Split a Load File into LOAD commands ``(P1, P2, data)``: P1 b8 marks the last
    block, P2 numbers blocks from 00 (GPC 2.3.1 §11.6.2.1-2; at most 256 blocks)."""
    if not 1 <= block_size <= 255:
        raise ValueError("block size is 1..255")
    chunks = [
        load_file_bytes[i : i + block_size] for i in range(0, len(load_file_bytes), block_size)
    ] or [b""]
    if len(chunks) > 256:
        raise ValueError("more than 256 LOAD blocks; use a larger block size")
    last = len(chunks) - 1
    return [(0x80 if i == last else 0x00, i, c) for i, c in enumerate(chunks)]


# --- DELETE, GET STATUS -----------------------------------------------------------------
def delete_data(aid: AID | bytes | str) -> bytes:
    """DELETE [card content] data field ``4F AID`` (Table 11-22); send it with
    P2 = 80 to delete related objects too (Table 11-21)."""
    return TLV(0x4F, _raw(aid)).to_bytes()


def get_status_data(aid_prefix: AID | bytes | str | None = None) -> bytes:
    """GET STATUS search criteria (Table 11-33): ``4F 00`` matches everything."""
    if aid_prefix is None:
        return b"\x4f\x00"
    raw = (
        aid_prefix.raw
        if isinstance(aid_prefix, AID)
        else (bytes.fromhex(aid_prefix) if isinstance(aid_prefix, str) else bytes(aid_prefix))
    )
    return TLV(0x4F, raw).to_bytes()


@dataclass
class StatusEntry:
    """One GlobalPlatform Registry entry as reported by GET STATUS (Tables 11-36, 11-37)."""

    aid: AID
    life_cycle: int
    privileges: bytes = b""
    elf_aid: AID | None = None
    sd_aid: AID | None = None
    version: bytes | None = None
    modules: list[AID] = field(default_factory=list)


def parse_get_status_response(data: bytes, p1: int, *, tagged: bool) -> list[StatusEntry]:
    """Parse GET STATUS response data in the ``E3`` format (P2 b2 = 1) or the legacy
    format (Table 11-36: AID LV, life cycle, privileges byte; P1 = 10 adds the modules).
    Malformed data raises :class:`ValueError` with a one-line reason."""
    try:
        return _parse_get_status_response(data, p1, tagged=tagged)
    except ISOException as exc:  # the BER-TLV codec's TLVError, a bad AID length
        raise ValueError(f"malformed GET STATUS response: {exc}") from None


def _parse_get_status_response(data: bytes, p1: int, *, tagged: bool) -> list[StatusEntry]:
    out: list[StatusEntry] = []
    if tagged:
        for e3 in find_all(parse(data), 0xE3):
            kids = e3.children()

            def val(tag: int, kids: list[TLV] = kids) -> bytes | None:
                o = find(kids, tag)
                return None if o is None else o.value

            aid = val(0x4F)
            lcs = val(0x9F70)
            if aid is None or not lcs:
                raise ValueError("E3 entry without 4F or 9F70")
            elf, sd = val(0xC4), val(0xCC)
            out.append(
                StatusEntry(
                    AID(aid),
                    lcs[0],
                    val(0xC5) or b"",
                    AID(elf) if elf else None,
                    AID(sd) if sd else None,
                    val(0xCE),
                    [AID(m.value) for m in find_all(kids, 0x84)],
                )
            )
        return out
    off = 0
    while off < len(data):
        n = data[off]
        entry_aid = AID(data[off + 1 : off + 1 + n])
        off += 1 + n
        if off + 2 > len(data):
            raise ValueError("truncated GET STATUS entry")
        entry = StatusEntry(entry_aid, data[off], bytes((data[off + 1],)))
        off += 2
        if p1 == 0x10:
            if off >= len(data):
                raise ValueError("truncated GET STATUS entry: module count missing")
            count = data[off]
            off += 1
            for _ in range(count):
                if off >= len(data):
                    raise ValueError("truncated GET STATUS entry: module AID missing")
                m = data[off]
                if off + 1 + m > len(data):
                    raise ValueError("truncated GET STATUS entry: module AID cut short")
                entry.modules.append(AID(data[off + 1 : off + 1 + m]))
                off += 1 + m
        out.append(entry)
    return out


# --- PUT KEY (GPC 2.3.1 §11.8, Amendment D §7.2) ------------------------------------------
def _wrap_key(dek: bytes, key: bytes) -> bytes:
    """AES-CBC, zero ICV, under the static Key-DEK (SCP03 has no session DEK; this is what
    GlobalPlatformPro's PlaintextKeys.encryptKey does). Keys that are not a multiple of
    16 bytes are padded with random bytes, which the card ignores."""
    padded = key + secrets.token_bytes((-len(key)) % 16)
    enc = Cipher(algorithms.AES(dek), modes.CBC(bytes(16))).encryptor()
    return enc.update(padded) + enc.finalize()


def put_key_data(new_keys: StaticKeys, dek: bytes) -> bytes:
    """PUT KEY data for a full SCP03 key set (ENC, MAC, DEK; key identifiers 1-3), each
    ``88 L Lk cryptogram 03 KCV`` (Table 11-70); send with P2 = 81."""
    out = bytearray((new_keys.kvn,))
    for k in (new_keys.enc, new_keys.mac, new_keys.dek):
        crypt = _wrap_key(dek, k)
        out += bytes((0x88,)) + encode_length(1 + len(crypt)) + bytes((len(k),)) + crypt
        out += b"\x03" + kcv_aes(k)
    return bytes(out)


def parse_put_key_response(data: bytes) -> tuple[int, list[bytes]]:
    """PUT KEY response: KVN then one 3-byte KCV per key (GPC 2.3.1 §11.8.3.1)."""
    if not data or (len(data) - 1) % 3:
        raise ValueError("bad PUT KEY response")
    return data[0], [data[i : i + 3] for i in range(1, len(data), 3)]


@dataclass(frozen=True)
class KeyInfo:
    key_id: int
    kvn: int
    key_type: int
    length: int


def parse_key_information(data: bytes) -> list[KeyInfo]:
    """Key Information Template ``E0 { C0 ID KVN type length ... }`` (GPC 2.3.1 §11.3.3.1)."""
    objs = parse(data)
    e0 = find(objs, 0xE0)
    if e0 is None:
        raise ValueError("no E0 template")
    out = []
    for c0 in find_all(e0.children(), 0xC0):
        v = c0.value
        if len(v) < 4:
            raise ValueError("short key information")
        out.append(KeyInfo(v[0], v[1], v[2], v[3]))
    return out


def dgi_data(items: Iterable[tuple[int, bytes]]) -> bytes:
    """STORE DATA body in DGI format (P1 b5-b4 = 01; GPC 2.3.1 §11.11.2.3): 2-byte DGI,
    length in one byte or ``FF`` + two bytes, value."""
    out = bytearray()
    for tag, value in items:
        if not 0 <= tag <= 0xFFFF or len(value) > 0xFFFF:
            raise ValueError("DGI tag is 2 bytes, value at most 65535 bytes")
        n = len(value)
        out += tag.to_bytes(2, "big")
        out += bytes((n,)) if n < 0xFF else b"\xff" + n.to_bytes(2, "big")
        out += value
    return bytes(out)


def select_apdu(aid: AID | bytes | str) -> bytes:
    """SELECT by DF name, first occurrence, FCI requested (ISO/IEC 7816-4; GPC §11.9)."""
    raw = _raw(aid)
    return bytes((0x00, 0xA4, 0x04, 0x00, len(raw))) + raw + b"\x00"


# --- a management session ---------------------------------------------------------------
class GPClient:
    """Card management over SCP03 through ``transmit`` (bytes in, bytes out)."""

    def __init__(self, transmit: Callable[[bytes], bytes], block_size: int = 200) -> None:
        self._transmit = transmit
        self.block_size = block_size
        self.scp: SCP03HostSession | None = None
        self.sd_aid: AID | None = None

    # -- raw exchange ------------------------------------------------------------------
    def transmit(self, apdu: bytes) -> tuple[bytes, int]:
        """Send one APDU, collecting ``61xx`` GET RESPONSE chunks; returns (data, SW)."""
        r = self._transmit(apdu)
        data, sw = r[:-2], int.from_bytes(r[-2:], "big")
        while sw >> 8 == 0x61:
            r = self._transmit(bytes((0x00, 0xC0, 0x00, 0x00, sw & 0xFF)))
            data += r[:-2]
            sw = int.from_bytes(r[-2:], "big")
        return data, sw

    def select(self, aid: AID | bytes | str) -> tuple[bytes, int]:
        self.scp = None
        self.sd_aid = AID.of(aid)
        return self.transmit(select_apdu(aid))

    def open(self, keys: StaticKeys, level: int = C_MAC, *, kvn: int | None = None) -> None:
        """INITIALIZE UPDATE + EXTERNAL AUTHENTICATE with the selected security domain."""
        scp = SCP03HostSession(keys, aid=self.sd_aid.raw if self.sd_aid else None)
        data, sw = self.transmit(scp.initialize_update(kvn=kvn))
        if sw != 0x9000:
            raise GPError("INITIALIZE UPDATE", sw)
        scp.process_initialize_update_response(data + sw.to_bytes(2, "big"))
        _, sw = self.transmit(scp.external_authenticate(level))
        if sw != 0x9000:
            raise GPError("EXTERNAL AUTHENTICATE", sw)
        self.scp = scp

    def send(
        self, ins: int, p1: int, p2: int, data: bytes = b"", le: int | None = 256
    ) -> tuple[bytes, int]:
        """One command, protected by the open session (or plain when there is none)."""
        if self.scp is None:
            apdu = bytes((GP_CLA, ins, p1, p2))
            if data:
                apdu += bytes((len(data),)) + data
            if le is not None:
                apdu += b"\x00"
            return self.transmit(apdu)
        raw = self.scp.wrap_command(GP_CLA, ins, p1, p2, data, le)
        r, sw = self.transmit(raw)
        return self.scp.unwrap_response(r + sw.to_bytes(2, "big"))

    def _check(self, what: str, res: tuple[bytes, int], ok: tuple[int, ...] = (0x9000,)) -> bytes:
        data, sw = res
        if sw not in ok:
            raise GPError(what, sw)
        return data

    # -- management commands --------------------------------------------------------------
    def install_for_load(
        self, elf_aid: AID | bytes | str, sd_aid: AID | bytes | str | None = None, lfdb_hash: bytes = b""
    ) -> None:
        data = install_for_load_data(elf_aid, sd_aid, lfdb_hash)
        self._check("INSTALL [for load]", self.send(INS.INSTALL, 0x02, 0x00, data))

    def load(self, load_file_bytes: bytes) -> None:
        for p1, p2, block in load_blocks(load_file_bytes, self.block_size):
            self._check("LOAD", self.send(INS.LOAD, p1, p2, block))

    def install(
        self,
        elf_aid: AID | bytes | str,
        module_aid: AID | bytes | str,
        app_aid: AID | bytes | str,
        privileges: bytes = b"\x00",
        params: bytes = b"",
        *,
        make_selectable: bool = True,
    ) -> None:
        data = install_for_install_data(elf_aid, module_aid, app_aid, privileges, params)
        p1 = 0x0C if make_selectable else 0x04
        self._check("INSTALL [for install]", self.send(INS.INSTALL, p1, 0x00, data))

    def make_selectable(self, app_aid: AID | bytes | str) -> None:
        data = install_for_make_selectable_data(app_aid)
        self._check("INSTALL [for make selectable]", self.send(INS.INSTALL, 0x08, 0x00, data))

    def install_for_personalization(self, app_aid: AID | bytes | str) -> None:
        data = install_for_personalization_data(app_aid)
        self._check("INSTALL [for personalization]", self.send(INS.INSTALL, 0x20, 0x00, data))

    def store_data(self, blocks: list[bytes], p1_format: int = 0x00) -> list[bytes]:
        """STORE DATA blocks (GPC 2.3.1 §11.11): P1 b8 on the last, P2 numbering from 00."""
        out = []
        for i, block in enumerate(blocks):
            p1 = p1_format | (0x80 if i == len(blocks) - 1 else 0x00)
            out.append(self._check("STORE DATA", self.send(INS.STORE_DATA, p1, i & 0xFF, block)))
        return out

    def delete(self, aid: AID | bytes | str, *, related: bool = False) -> None:
        p2 = 0x80 if related else 0x00
        self._check("DELETE", self.send(INS.DELETE, 0x00, p2, delete_data(aid)))

    def get_status(
        self, p1: int, *, tagged: bool = True, aid_prefix: AID | bytes | str | None = None
    ) -> list[StatusEntry]:
        """GET STATUS with ``6310`` continuation (P2 b1 = next occurrence)."""
        p2 = 0x02 if tagged else 0x00
        data = get_status_data(aid_prefix)
        res = self.send(INS.GET_STATUS, p1, p2, data)
        if res[1] == 0x6A88:
            return []
        chunk = self._check("GET STATUS", res, (0x9000, 0x6310))
        raw = chunk
        while res[1] == 0x6310:
            res = self.send(INS.GET_STATUS, p1, p2 | 0x01, data)
            raw += self._check("GET STATUS", res, (0x9000, 0x6310))
        return parse_get_status_response(raw, p1, tagged=tagged)

    def set_status(self, p1: int, p2: int, aid: AID | bytes | str | None = None) -> None:
        self._check("SET STATUS", self.send(INS.SET_STATUS, p1, p2, _raw(aid), le=None))

    def put_key(self, new_keys: StaticKeys, *, replace_kvn: int = 0) -> tuple[int, list[bytes]]:
        """PUT KEY of a whole SCP03 key set, wrapped with the session's Key-DEK."""
        if self.scp is None:
            raise GPError("PUT KEY (no session)", 0x6982)
        data = put_key_data(new_keys, self.scp.keys.dek)
        res = self._check("PUT KEY", self.send(INS.PUT_KEY, replace_kvn, 0x81, data))
        return parse_put_key_response(res)

    def get_data(self, p1p2: int) -> bytes:
        return self._check("GET DATA", self.send(INS.GET_DATA, p1p2 >> 8, p1p2 & 0xFF))
