"""Card-side parsers of GlobalPlatform command data fields (GPC 2.3.1 ch. 11).

Every parser takes the plain data field and returns a small dataclass, or raises
:class:`~meterhub.protocols.iso7816.ISOException` with the status word GPC prescribes
(``6A80`` for malformed data, ``6A86`` for wrong P1/P2). Nothing else escapes: the
Hypothesis tests feed them random bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..iso7816.aid import AID
from ..iso7816.sw import SW, ISOException
from ..iso7816.tlv import TLV, TLVError, find, parse

__all__ = [
    "InstallForLoad",
    "InstallForInstall",
    "InstallForPersonalization",
    "PutKey",
    "KeyComponent",
    "parse_install_for_load",
    "parse_install_for_install",
    "parse_install_for_personalization",
    "parse_delete",
    "parse_get_status",
    "parse_put_key",
    "parse_lv_fields",
]


def _bad(msg: str) -> ISOException:
    return ISOException(SW.WRONG_DATA, msg)


class _Reader:
    """Cursor over a data field made of length-value fields."""

    def __init__(self, data: bytes) -> None:
        self.data = bytes(data)
        self.off = 0

    def _take(self, n: int) -> bytes:
        if self.off + n > len(self.data):
            raise _bad("data field too short")
        out = self.data[self.off : self.off + n]
        self.off += n
        return out

    def byte(self) -> int:
        return self._take(1)[0]

    def lv(self) -> bytes:
        """One-byte length, then value (GPC 2.3.1 §11.5.2.3 for AIDs, hashes, privileges)."""
        return self._take(self.byte())

    def ber_lv(self) -> bytes:
        """BER length (1 to 3 bytes, GPC 2.3.1 §11.1.5) then value: parameter and token
        fields may exceed 127 bytes."""
        first = self.byte()
        if first < 0x80:
            n = first
        elif first == 0x81:
            n = self.byte()
            if n < 0x80:
                raise _bad("non-minimal length")
        elif first == 0x82:
            n = int.from_bytes(self._take(2), "big")
            if n < 0x100:
                raise _bad("non-minimal length")
        else:
            raise _bad("bad length byte")
        return self._take(n)

    def end(self) -> None:
        if self.off != len(self.data):
            raise _bad("trailing bytes in data field")


def _aid_or_empty(raw: bytes) -> AID | None:
    if not raw:
        return None
    try:
        return AID(raw)
    except ValueError:
        raise _bad("an AID has 5..16 bytes") from None


def _aid(raw: bytes) -> AID:
    aid = _aid_or_empty(raw)
    if aid is None:
        raise _bad("AID missing")
    return aid


def parse_lv_fields(data: bytes, n: int) -> list[bytes]:
    """``n`` one-byte-length LV fields covering ``data`` exactly (for tests and tools)."""
    r = _Reader(data)
    out = [r.lv() for _ in range(n)]
    r.end()
    return out


@dataclass(frozen=True)
class InstallForLoad:
    """INSTALL [for load] data field, GPC 2.3.1 §11.5.2.3.1 Table 11-47."""

    elf_aid: AID
    sd_aid: AID | None
    lfdb_hash: bytes
    load_params: bytes
    token: bytes


def parse_install_for_load(data: bytes) -> InstallForLoad:
    r = _Reader(data)
    elf = _aid(r.lv())
    sd = _aid_or_empty(r.lv())
    digest = r.lv()
    params = r.ber_lv()
    token = r.ber_lv()
    r.end()
    if digest and len(digest) != 32:
        raise _bad("the load file data block hash is SHA-256 here")
    return InstallForLoad(elf, sd, digest, params, token)


@dataclass(frozen=True)
class InstallForInstall:
    """INSTALL [for install] / [for make selectable] data field, GPC 2.3.1 §11.5.2.3.2-3
    (Tables 11-48, 11-49). ``app_params`` is the value of tag ``C9``."""

    elf_aid: AID | None
    module_aid: AID | None
    app_aid: AID
    privileges: bytes
    app_params: bytes
    token: bytes


def _privileges(raw: bytes) -> bytes:
    if len(raw) not in (1, 3):
        raise _bad("privileges are 1 or 3 bytes (GPC 2.3.1 §11.1.2)")
    return raw + bytes(3 - len(raw))


def _install_params(raw: bytes) -> bytes:
    """Value of ``C9`` inside the install parameters (Table 11-49); other system
    parameters (``EF``, ``CA``, ...) are accepted and ignored."""
    if not raw:
        return b""
    try:
        objs = parse(raw)
    except TLVError:
        raise _bad("install parameters are BER-TLV") from None
    c9 = find(objs, 0xC9)
    return c9.value if c9 is not None else b""


def parse_install_for_install(
    data: bytes, *, make_selectable_only: bool = False
) -> InstallForInstall:
    r = _Reader(data)
    elf = _aid_or_empty(r.lv())
    module = _aid_or_empty(r.lv())
    app = _aid(r.lv())
    privs = r.lv()
    params = r.ber_lv()
    token = r.ber_lv()
    r.end()
    if make_selectable_only:
        # Table 11-50: only the application AID (and optionally privileges) are present.
        if elf is not None or module is not None or params:
            raise _bad("INSTALL [for make selectable] carries only the application AID")
        return InstallForInstall(None, None, app, _privileges(privs) if privs else b"", b"", token)
    if elf is None or module is None:
        raise _bad("INSTALL [for install] needs load file and module AIDs")
    return InstallForInstall(elf, module, app, _privileges(privs), _install_params(params), token)


@dataclass(frozen=True)
class InstallForPersonalization:
    """INSTALL [for personalization], GPC 2.3.1 §11.5.2.3.6 Table 11-52."""

    app_aid: AID


def parse_install_for_personalization(data: bytes) -> InstallForPersonalization:
    r = _Reader(data)
    if r.lv() or r.lv():
        raise _bad("first two fields are empty")
    app = _aid(r.lv())
    if r.lv() or r.ber_lv() or r.ber_lv():
        raise _bad("last three fields are empty")
    r.end()
    return InstallForPersonalization(app)


def parse_delete(data: bytes) -> AID:
    """DELETE [card content] data field: ``4F`` AID (GPC 2.3.1 §11.2.2.3, Table 11-22).
    Key deletion (``D0``/``D2``) is not offered: 6A80 like any other layout."""
    try:
        objs = parse(data)
    except TLVError:
        raise _bad("DELETE data is BER-TLV") from None
    if len(objs) != 1 or objs[0].tag != 0x4F:
        raise _bad("DELETE carries exactly one 4F AID here")
    return _aid(objs[0].value)


def parse_get_status(data: bytes) -> bytes:
    """GET STATUS search criteria (GPC 2.3.1 §11.4.2.3): ``4F`` with an AID or AID prefix
    (empty: every entry), optionally followed by a ``5C`` tag list (accepted, ignored).
    Returns the AID prefix."""
    try:
        objs = parse(data)
    except TLVError:
        raise _bad("GET STATUS data is BER-TLV") from None
    if not objs or objs[0].tag != 0x4F or any(o.tag != 0x5C for o in objs[1:]):
        raise _bad("search criteria start with 4F")
    if len(objs[0].value) > 16:
        raise _bad("AID longer than 16 bytes")
    return objs[0].value


@dataclass(frozen=True)
class KeyComponent:
    """One key of a PUT KEY data field (GPC 2.3.1 §11.8.2.3 Table 11-70; Amendment D
    §7.2: an AES key is ``88 Lk L <cryptogram>``, L being the clear key length; yubikit
    omits L, which is then the cryptogram length)."""

    key_type: int
    key_length: int
    cryptogram: bytes
    kcv: bytes


@dataclass(frozen=True)
class PutKey:
    new_kvn: int
    components: tuple[KeyComponent, ...]


def parse_put_key(data: bytes) -> PutKey:
    r = _Reader(data)
    kvn = r.byte()
    comps = []
    while r.off < len(r.data):
        ktype = r.byte()
        body = r.ber_lv()
        if ktype == 0x88 and len(body) % 16 == 1:
            # AES as GPPro sends it (Amendment D §7.2): clear key length, then cryptogram.
            length, crypt = body[0], body[1:]
        elif ktype == 0x88:
            # AES as yubikit sends it: the bare cryptogram of a 16/32-byte key. Whole
            # blocks vs. one extra byte keeps the two forms apart.
            length, crypt = len(body), body
        else:
            length, crypt = len(body), body
        kcv = r.lv()
        comps.append(KeyComponent(ktype, length, crypt, kcv))
    if not comps:
        raise _bad("PUT KEY without key data")
    return PutKey(kvn, tuple(comps))


def tlv_value(objs: list[TLV], tag: int) -> bytes | None:
    o = find(objs, tag)
    return None if o is None else o.value
