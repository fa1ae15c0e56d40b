"""The utility's Trusted Service Manager: remote management of its security domain on a hub.

The TSM is the off-card entity of GlobalPlatform (GPC 2.3.1 §3, §9): it owns the SCP03 keys
of one security domain (the ISD, or a supplementary SD for one data recipient) and manages
the content associated with it, over any transport that exchanges APDUs as bytes — an
in-process :class:`~meterhub.card.Card`, a vpcd-connected hub through PC/SC
(:class:`PcscTransport`), or anything else with ``transmit(bytes) -> bytes``.

Every management command runs inside an authenticated SCP03 session (Amendment D), by
default at security level ``33`` (C-MAC, C-DECRYPTION, R-MAC, R-ENCRYPTION). The command
formats come from :mod:`meterhub.protocols.gp.host`; this module adds the workflows:

* :meth:`TSM.deploy` - INSTALL [for load], LOAD blocks, INSTALL [for install and make
  selectable] (GPC 2.3.1 §9.3, §9.4);
* :meth:`TSM.update` - DELETE the old instance and its package, then deploy the new version;
* :meth:`TSM.delete` - DELETE with related objects (§11.2);
* :meth:`TSM.store_data` / :meth:`TSM.push_tariff` - INSTALL [for personalization] then
  STORE DATA blocks to an applet through its SD (§11.11, §9.7);
* :meth:`TSM.registry` - GET STATUS of the SD, applications and load files, following
  ``6310`` (§11.4);
* :meth:`TSM.rotate_keys` - PUT KEY of a new SCP03 key set, checked by its KCVs (§11.8).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from ..card.gp.loadfile import LoadFileError, Package, lfdb_hash, parse_package, sign_load_file
from ..crypto import ecdsa
from ..errors import MeterhubError
from ..policy import refusal_reason
from ..protocols.gp.constants import ISD_AID
from ..protocols.gp.host import GPClient, GPError, StatusEntry, load_file
from ..protocols.gp.keys import StaticKeys
from ..protocols.gp.scp03 import C_DECRYPTION, C_MAC, R_ENCRYPTION, R_MAC, SCP03Error
from ..protocols.iso7816.aid import AID

__all__ = [
    "DEFAULT_LEVEL",
    "ISD_AID",
    "PcscTransport",
    "RegistryView",
    "TSM",
    "TSMError",
    "Transport",
    "dap_signer",
]

#: C-MAC + C-DECRYPTION + R-MAC + R-ENCRYPTION (Amendment D §7.1.2.1, P1 = '33').
DEFAULT_LEVEL = C_MAC | C_DECRYPTION | R_MAC | R_ENCRYPTION

# GET STATUS P1 (GPC 2.3.1 Table 11-32).
_STATUS_ISD, _STATUS_APPS, _STATUS_ELF, _STATUS_ELF_MODULES = 0x80, 0x40, 0x20, 0x10
_SW_REF_NOT_FOUND = 0x6A88


def dap_signer(
    sd_aid: AID | bytes | str, key: ecdsa.SigningKey
) -> Callable[[bytes], list[tuple[AID, bytes]]]:
    """A ``dap`` callable for :class:`TSM`: one DAP block by ``sd_aid`` signed with ``key``
    (ECDSA P-256 over the Load File Data Block Hash, GPC 2.3.1 §C.3)."""
    sd = AID.of(sd_aid)
    return lambda lfdb: [(sd, sign_load_file(lfdb, key))]


class TSMError(MeterhubError):
    """A management step failed; ``sw`` is the card's status word (or the SCP03 one)."""

    def __init__(self, message: str, sw: int | None = None) -> None:
        super().__init__(message if sw is None else f"{message} (SW {sw:04X})")
        self.sw = sw


class Transport(Protocol):
    """Anything that exchanges one C-APDU for one R-APDU (bytes, SW at the end)."""

    def transmit(self, capdu: bytes) -> bytes: ...


class PcscTransport:
    """APDUs through PC/SC with pyscard (an optional, test-only dependency).

    ``reader`` is a reader name (or a prefix of one, e.g. ``"Virtual PCD 00 00"``); the
    connection is made on construction and released by :meth:`close`.
    """

    def __init__(self, reader: str, *, connection: Any = None) -> None:
        if connection is None:
            try:
                from smartcard.System import readers
            except ImportError as exc:  # pragma: no cover - depends on the environment
                raise TSMError("PC/SC access needs pyscard (pip install pyscard)") from exc
            match = [r for r in readers() if str(r).startswith(reader)]
            if not match:
                raise TSMError(f"no PC/SC reader named {reader!r}")
            connection = match[0].createConnection()
            connection.connect()
        self.connection = connection

    def transmit(self, capdu: bytes) -> bytes:
        try:
            data, sw1, sw2 = self.connection.transmit(list(capdu))
        except Exception as exc:  # pyscard's CardConnectionException and friends
            raise TSMError(f"PC/SC transmit failed: {exc}") from None
        return bytes(data) + bytes((sw1, sw2))

    def close(self) -> None:
        self.connection.disconnect()


@dataclass(frozen=True)
class RegistryView:
    """What GET STATUS reported: the SD itself, applications/SDs, load files."""

    issuer_sd: list[StatusEntry]
    applications: list[StatusEntry]
    load_files: list[StatusEntry]

    def application(self, aid: AID | bytes | str) -> StatusEntry | None:
        a = AID.of(aid)
        return next((e for e in self.applications if e.aid == a), None)

    def load_file(self, aid: AID | bytes | str) -> StatusEntry | None:
        a = AID.of(aid)
        return next((e for e in self.load_files if e.aid == a), None)


def _package(lfdb: bytes) -> Package:
    """Refuse locally what the card would refuse with 6A80 (a malformed package)."""
    try:
        return parse_package(lfdb)
    except LoadFileError as exc:
        raise TSMError(f"bad package: {exc}", exc.sw) from None


class TSM:
    """Management client for one security domain, over ``transport``.

    ``keys`` is the SD's current SCP03 key set. ``dap`` optionally signs load files:
    a callable from the Load File Data Block to ``[(SD AID, signature)]`` DAP blocks
    (GPC 2.3.1 §C.3), e.g. ``lambda lfdb: [(sd, sign_load_file(lfdb, key))]``.
    Use as a context manager, or call :meth:`open` / :meth:`close`.
    """

    def __init__(
        self,
        transport: Transport | Callable[[bytes], bytes],
        keys: StaticKeys,
        *,
        sd_aid: AID | bytes | str = ISD_AID,
        level: int = DEFAULT_LEVEL,
        block_size: int = 200,
        dap: Callable[[bytes], Iterable[tuple[AID | bytes | str, bytes]]] | None = None,
    ) -> None:
        transmit = transport if callable(transport) else transport.transmit
        self.client = GPClient(transmit, block_size=block_size)
        self.keys = keys
        self.sd_aid = AID.of(sd_aid)
        self.level = level
        self.dap = dap

    # -- session ---------------------------------------------------------------------------
    def open(self) -> TSM:
        """SELECT the SD and open SCP03 (INITIALIZE UPDATE, EXTERNAL AUTHENTICATE)."""
        _, sw = self.client.select(self.sd_aid)
        if sw != 0x9000 and sw >> 8 not in (0x62, 0x63):
            raise TSMError(f"SELECT {self.sd_aid}", sw)
        try:
            self.client.open(self.keys, self.level)
        except GPError as exc:
            raise TSMError(f"opening SCP03 with {self.sd_aid}", exc.sw) from None
        except SCP03Error as exc:
            raise TSMError(f"opening SCP03 with {self.sd_aid}: {exc.message}", exc.sw) from None
        return self

    def close(self) -> None:
        """Forget the session keys (the card ends the session at the next SELECT/reset)."""
        if self.client.scp is not None:
            self.client.scp.close()
        self.client.scp = None

    def __enter__(self) -> TSM:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self.client.scp is None:
            raise TSMError(f"{what}: no open secure channel; call open() first")
        try:
            return fn(*args, **kwargs)
        except GPError as exc:
            raise TSMError(f"{what} refused: {refusal_reason(exc.sw)}", exc.sw) from None
        except SCP03Error as exc:  # a bad R-MAC: the session is gone
            self.client.scp = None
            raise TSMError(f"{what}: {exc.message}", exc.sw) from None
        except ValueError as exc:  # a response the host parsers refuse
            raise TSMError(f"{what}: {exc}") from None

    # -- content management --------------------------------------------------------------
    def load(self, lfdb: bytes) -> Package:
        """INSTALL [for load] + LOAD of a package (Load File Data Block), DAP-signed if
        this TSM has a ``dap`` signer. Returns the parsed package."""
        package = _package(lfdb)
        daps = list(self.dap(lfdb)) if self.dap is not None else []
        digest = lfdb_hash(lfdb) if daps else b""  # GPC §11.5.2.3: hash needed with a DAP
        self._run(
            "INSTALL [for load]", self.client.install_for_load, package.aid, self.sd_aid, digest
        )
        self._run("LOAD", self.client.load, load_file(lfdb, daps))
        return package

    def install(
        self,
        package_aid: AID | bytes | str,
        module_aid: AID | bytes | str,
        app_aid: AID | bytes | str,
        *,
        privileges: bytes = b"\x00",
        params: bytes = b"",
    ) -> None:
        """INSTALL [for install and make selectable] (P1 = 0C)."""
        self._run(
            "INSTALL [for install and make selectable]",
            self.client.install,
            package_aid,
            module_aid,
            app_aid,
            privileges,
            params,
        )

    def deploy(
        self,
        lfdb: bytes,
        app_aid: AID | bytes | str,
        *,
        module_aid: AID | bytes | str | None = None,
        privileges: bytes = b"\x00",
        params: bytes = b"",
    ) -> Package:
        """Load a package and install one applet instance from it (the package's only
        module unless ``module_aid`` names one)."""
        package = self.load(lfdb)
        if module_aid is None:
            if len(package.modules) != 1:
                raise TSMError("the package has several modules: name module_aid")
            module_aid = package.modules[0].aid
        self.install(package.aid, module_aid, app_aid, privileges=privileges, params=params)
        return package

    def delete(self, aid: AID | bytes | str, *, related: bool = True) -> None:
        """DELETE an application or a load file (with related objects by default)."""
        self._run("DELETE", self.client.delete, aid, related=related)

    def update(
        self,
        lfdb: bytes,
        app_aid: AID | bytes | str,
        *,
        module_aid: AID | bytes | str | None = None,
        privileges: bytes = b"\x00",
        params: bytes = b"",
    ) -> Package:
        """Replace an applet by a new version of its package: DELETE the instance and
        the old load file (when present), then :meth:`deploy`. GlobalPlatform has no
        in-place upgrade in GPC 2.3.1, so the instance's data goes with it."""
        package = _package(lfdb)
        reg = self.registry()
        if reg.application(app_aid) is not None:
            self.delete(app_aid, related=False)
        if reg.load_file(package.aid) is not None:
            self.delete(package.aid, related=True)
        return self.deploy(
            lfdb, app_aid, module_aid=module_aid, privileges=privileges, params=params
        )

    def set_status(self, p1: int, p2: int, aid: AID | bytes | str | None = None) -> None:
        """SET STATUS (GPC 2.3.1 §11.10): e.g. lock an applet with P1 40, P2 83."""
        self._run("SET STATUS", self.client.set_status, p1, p2, aid)

    # -- data --------------------------------------------------------------------------
    def store_data(
        self, app_aid: AID | bytes | str, data: bytes, *, block_size: int | None = None
    ) -> list[bytes]:
        """INSTALL [for personalization] of ``app_aid``, then ``data`` in STORE DATA blocks
        (GPC 2.3.1 §11.11: P1 b8 on the last block, P2 the block number). Returns each
        block's response data."""
        size = block_size or self.client.block_size
        if not 1 <= size <= 255:
            raise TSMError("STORE DATA block size is 1..255")
        blocks = [data[i : i + size] for i in range(0, len(data), size)] or [b""]
        if len(blocks) > 256:
            raise TSMError("more than 256 STORE DATA blocks")
        self._run("INSTALL [for personalization]", self.client.install_for_personalization, app_aid)
        try:
            return self._run("STORE DATA", self.client.store_data, blocks)
        except TSMError as exc:
            if exc.sw is None:
                raise
            # The applet refused the data: say why in one line (docs/privacy.md).
            raise TSMError(f"STORE DATA refused: {refusal_reason(exc.sw)}", exc.sw) from None

    def push_tariff(self, app_aid: AID | bytes | str, signed_tariff: bytes) -> None:
        """Send a signed tariff file (docs/tariffs.md) to an applet with STORE DATA. The
        applet checks the supplier signature itself; the SD only carries the bytes."""
        self.store_data(app_aid, signed_tariff)

    def registry(self) -> RegistryView:
        """GET STATUS of the SD (P1 80), applications (40) and load files (20), tag-E3
        format, each following ``6310`` continuations (GPC 2.3.1 §11.4)."""

        def status(p1: int) -> list[StatusEntry]:
            return self._run("GET STATUS", self.client.get_status, p1)

        return RegistryView(status(_STATUS_ISD), status(_STATUS_APPS), status(_STATUS_ELF))

    # -- keys ----------------------------------------------------------------------------
    def rotate_keys(self, new_keys: StaticKeys, *, replace: bool = True) -> None:
        """PUT KEY of ``new_keys`` (wrapped with the current Key-DEK), replacing the
        current key set (P1 = its KVN) or adding one (P1 = 00). The card answers the KVN
        and the KCVs, which must match; the session is then reopened with the new keys."""
        p1 = self.keys.kvn if replace else 0
        kvn, kcvs = self._run("PUT KEY", self.client.put_key, new_keys, replace_kvn=p1)
        if kvn != new_keys.kvn or list(kcvs) != list(new_keys.kcv()):
            raise TSMError("PUT KEY: the card reported other key check values")
        self.close()
        self.keys = new_keys
        self.open()
