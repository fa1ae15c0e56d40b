"""meterhub load files: signed packages naming reviewed applet classes.

A GlobalPlatform Load File (GPC 2.3.1 §11.6.2.3, Table 11-59) is an optional series of DAP
blocks (tag ``E2``) followed by the Load File Data Block (tag ``C4``). On a Java Card the
Load File Data Block is a CAP file. Here it is a small BER-TLV *package descriptor*: no code
is ever loaded from it. It names applet classes that were registered in the hub with
:func:`meterhub.card.register_applet_class`, pins each one by the SHA-256 hash of its source,
and carries the package AID and version::

    C4 { 80 01 <format 01>
         4F <package (Executable Load File) AID>
         CE <version, 2 bytes major.minor>
         A1 { 84 <Executable Module AID>  81 <registered class name, UTF-8>
              82 <SHA-256 code hash, 32 bytes> }          one A1 per module
       }

The Load File Data Block Hash is SHA-256 over the ``C4`` *value* (GPC 2.3.1 §C.2, with the
SHA-256 option of Table 11-53). A DAP block (GPC 2.3.1 §C.3, §11.6.2.3) is
``E2 { 4F <SD AID>, C3 <signature> }``; the signature is ECDSA P-256 with SHA-256 over the
32-byte Load File Data Block Hash, encoded as ``r || s`` (64 bytes), and the card checks it
with the DAP key of the security domain named in ``4F``.
"""

from __future__ import annotations

import hashlib
import inspect
from dataclasses import dataclass

from ...crypto import ecdsa
from ...protocols.iso7816.aid import AID
from ...protocols.iso7816.sw import SW, ISOException
from ...protocols.iso7816.tlv import TLV, TLVError, find, find_all, parse
from ..applet import Applet

__all__ = [
    "FORMAT_VERSION",
    "LoadFileError",
    "Module",
    "Package",
    "applet_code_hash",
    "lfdb_hash",
    "make_load_file",
    "parse_load_file",
    "parse_package",
    "sign_load_file",
    "verify_dap",
]

FORMAT_VERSION = 0x01
_TAG_FORMAT, _TAG_NAME, _TAG_HASH = 0x80, 0x81, 0x82
_TAG_MODULE = 0xA1


class LoadFileError(ISOException):
    """A load file the card refuses: ``6A80`` (GPC 2.3.1 §11.6.3, wrong data)."""

    def __init__(self, message: str) -> None:
        super().__init__(SW.WRONG_DATA, message)


# Per class, computed once (inspect.getsource reads the file); a dict rather than
# functools.cache, whose Hashable parameter type rejects type[Applet] under mypy.
_CODE_HASHES: dict[type[Applet], bytes] = {}


def applet_code_hash(cls: type[Applet]) -> bytes:
    """SHA-256 of the source of an applet class: what a package pins its module to.

    The hash covers the class body as Python reads it from its file, so any edit to the
    reviewed implementation changes it and old signed packages stop installing.
    """
    cached = _CODE_HASHES.get(cls)
    if cached is not None:
        return cached
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError) as exc:  # built in, or defined in a REPL
        raise LoadFileError(f"no source for {cls.__qualname__}: {exc}") from None
    digest = _CODE_HASHES[cls] = hashlib.sha256(source.encode()).digest()
    return digest


@dataclass(frozen=True)
class Module:
    """One Executable Module of a package: an applet class the hub already has."""

    aid: AID
    class_name: str
    code_hash: bytes


@dataclass(frozen=True)
class Package:
    """A parsed Load File Data Block."""

    aid: AID
    version: bytes
    modules: tuple[Module, ...]

    def module(self, aid: AID) -> Module | None:
        for m in self.modules:
            if m.aid == aid:
                return m
        return None


def make_load_file(
    package_aid: AID | bytes | str,
    modules: dict[AID | bytes | str, type[Applet] | tuple[str, bytes]],
    version: bytes = b"\x01\x00",
) -> bytes:
    """Build a Load File Data Block (the value of tag ``C4``).

    ``modules`` maps each Executable Module AID to a registered applet class (its name
    and code hash are looked up) or to an explicit ``(class name, code hash)`` pair.
    """
    from ..applet import applet_class_name

    if len(version) != 2:
        raise ValueError("version is two bytes (major, minor), GPC 2.3.1 §11.1.9")
    objs = [
        TLV(_TAG_FORMAT, bytes((FORMAT_VERSION,))),
        TLV(0x4F, AID.of(package_aid).raw),
        TLV(0xCE, bytes(version)),
    ]
    for maid, impl in modules.items():
        if isinstance(impl, tuple):
            name, digest = impl
        else:
            cname = applet_class_name(impl)
            if cname is None:
                raise ValueError(f"{impl.__qualname__} is not a registered applet class")
            name, digest = cname, applet_code_hash(impl)
        objs.append(
            TLV.build(
                _TAG_MODULE,
                [
                    TLV(0x84, AID.of(maid).raw),
                    TLV(_TAG_NAME, name.encode()),
                    TLV(_TAG_HASH, bytes(digest)),
                ],
            )
        )
    return b"".join(o.to_bytes() for o in objs)


def parse_package(lfdb: bytes) -> Package:
    """Parse a Load File Data Block; any defect raises :class:`LoadFileError` (6A80)."""
    try:
        objs = parse(lfdb)
        fmt = find(objs, _TAG_FORMAT)
        if fmt is None or fmt.value != bytes((FORMAT_VERSION,)):
            raise LoadFileError("unknown load file format")
        aid_obj, ver = find(objs, 0x4F), find(objs, 0xCE)
        if aid_obj is None or ver is None or len(ver.value) != 2:
            raise LoadFileError("package AID or version missing")
        mods = []
        for m in find_all(objs, _TAG_MODULE):
            kids = m.children()
            maid, name, digest = find(kids, 0x84), find(kids, _TAG_NAME), find(kids, _TAG_HASH)
            if maid is None or name is None or digest is None or len(digest.value) != 32:
                raise LoadFileError("incomplete module")
            mods.append(Module(AID(maid.value), name.value.decode(), digest.value))
        if not mods or len({m.aid for m in mods}) != len(mods):
            raise LoadFileError("a package has one or more modules with distinct AIDs")
        return Package(AID(aid_obj.value), ver.value, tuple(mods))
    except LoadFileError:
        raise
    except (TLVError, ValueError, UnicodeDecodeError) as exc:
        raise LoadFileError(f"malformed load file data block: {exc}") from None


def lfdb_hash(lfdb: bytes) -> bytes:
    """Load File Data Block Hash (GPC 2.3.1 §C.2), SHA-256."""
    return hashlib.sha256(bytes(lfdb)).digest()


def sign_load_file(lfdb: bytes, key: ecdsa.SigningKey) -> bytes:
    """DAP signature (GPC 2.3.1 §C.3, ECDSA P-256 variant): ``r || s`` over the LFDB hash."""
    return ecdsa.sign(key, lfdb_hash(lfdb))


def verify_dap(lfdb_digest: bytes, signature: bytes, key: ecdsa.VerifyingKey) -> bool:
    """Check a DAP signature against the Load File Data Block Hash."""
    return ecdsa.verify(key, lfdb_digest, signature)


def parse_load_file(load_file: bytes) -> tuple[list[tuple[AID, bytes]], bytes]:
    """Split a Load File into its DAP blocks ``[(SD AID, signature)]`` and the LFDB.

    GPC 2.3.1 §11.6.2.3: zero or more ``E2`` blocks, then exactly one ``C4``, nothing else.
    """
    try:
        objs = parse(load_file)
        if not objs or objs[-1].tag != 0xC4:
            raise LoadFileError("load file must end with the C4 load file data block")
        daps = []
        for o in objs[:-1]:
            if o.tag != 0xE2:
                raise LoadFileError(f"unexpected tag {o.tag:X} in load file")
            kids = o.children()
            sd, sig = find(kids, 0x4F), find(kids, 0xC3)
            if sd is None or sig is None:
                raise LoadFileError("DAP block needs 4F and C3")
            daps.append((AID(sd.value), sig.value))
        return daps, objs[-1].value
    except LoadFileError:
        raise
    except (TLVError, ValueError) as exc:
        raise LoadFileError(f"malformed load file: {exc}") from None
