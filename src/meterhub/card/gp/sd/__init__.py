"""Security domains: the Issuer Security Domain (card manager) and Supplementary Security
Domains, GlobalPlatform Card Specification v2.3.1 with SCP03 (Amendment D).

A :class:`SecurityDomain` is an applet (registered as ``meterhub.gp.sd``) with the Security
Domain privilege, so its context may drive the card's registry. Each instance keeps its own
SCP03 key sets and sequence counters in its own namespace of the persistent store, so one
domain's keys can never open another domain's channel. The ISD additionally carries the card
life cycle (GPC 2.3.1 §5.1) and installs the card's ``select_guard``.

Command routing (GPC 2.3.1 §10.2, §11):

* INITIALIZE UPDATE / EXTERNAL AUTHENTICATE open a session (Amendment D §7.1);
* GET DATA works without a session; every other command needs an authenticated session
  with at least C-MAC (GPC 2.3.1 §10.2.2, §11.1.4 Table 11-10 "secure messaging"), else
  ``6982``;
* protected commands are unwrapped by the domain's :class:`SCP03CardSession` and their
  responses wrapped by it (R-MAC / R-ENC as the session level says).


Modules: :mod:`.base` (shared state, checks, GET DATA, the life-cycle guard),
:mod:`.content` (INSTALL, LOAD, STORE DATA, DELETE), :mod:`.status` (GET/SET STATUS),
:mod:`.keys` (PUT KEY). :class:`SecurityDomain` puts them together and routes each INS
through one table, ``_HANDLERS``.
"""

from __future__ import annotations

from collections.abc import Callable

from ....protocols.gp.constants import INS
from ....protocols.gp.keys import KeySetError
from ....protocols.gp.scp03 import C_MAC, SCP03Error
from ....protocols.iso7816.apdu import CommandAPDU, ResponseAPDU
from ....protocols.iso7816.sw import SW
from ....protocols.iso7816.tlv import TLVError
from ...applet import register_applet_class
from .base import MAX_LOAD_FILE, MAX_STATUS_DATA, SD_CLASS_NAME, _err, attach, card_recognition_data
from .content import ContentManagement
from .keys import KeyManagement
from .status import StatusManagement

__all__ = [
    "MAX_LOAD_FILE",
    "MAX_STATUS_DATA",
    "SD_CLASS_NAME",
    "SecurityDomain",
    "attach",
    "card_recognition_data",
]


class SecurityDomain(ContentManagement, StatusManagement, KeyManagement):
    """ISD or SSD (GPC 2.3.1 ch. 7, ch. 11): the command groups, routed by ``_HANDLERS``."""

    # --- entry point -------------------------------------------------------------------
    def process(self, apdu: CommandAPDU) -> ResponseAPDU | bytes | None:
        if not self._alive[0]:
            self._reset_volatile()  # first APDU since select or reset: no session survives
            self._alive[0] = 1
        if self.selecting_applet():
            self._reset_volatile()  # GPC 2.3.1 §10.2.3: a SELECT ends the session
            return self.on_select_apdu(apdu)
        try:
            return self._process(apdu)
        except SCP03Error as exc:
            return ResponseAPDU(b"", exc.sw)

    def _process(self, apdu: CommandAPDU) -> ResponseAPDU | bytes | None:
        ins = apdu.ins
        if ins in (INS.GET_DATA, INS.GET_DATA_ODD) and not apdu.secure_messaging:
            if self.scp.is_authenticated:
                # A plain command inside a session would bypass its MAC chain: end it.
                self.scp.close()
                raise _err(SW.SECURITY_STATUS_NOT_SATISFIED)
            return self._get_data(apdu.p1, apdu.p2, apdu.data)
        if apdu.interindustry and ins == 0xA4:
            raise _err(SW.FILE_NOT_FOUND)  # a SELECT the card forwarded: no such applet
        if apdu.interindustry and ins not in (INS.GET_DATA, INS.GET_DATA_ODD):
            # GP commands use the proprietary class; GET DATA may come as 00/04 (yubikit).
            raise _err(SW.CLA_NOT_SUPPORTED if ins in _HANDLERS else SW.INS_NOT_SUPPORTED)
        if ins == INS.INITIALIZE_UPDATE:
            self._load, self._status, self._perso = None, None, None
            return self.scp.initialize_update(apdu.cla, apdu.p1, apdu.p2, apdu.data)
        if ins == INS.EXTERNAL_AUTHENTICATE:
            self.scp.external_authenticate(
                apdu.cla, apdu.p1, apdu.p2, apdu.data, extended=bool(apdu.extended)
            )
            return None
        handler = _HANDLERS.get(ins)
        if handler is None and ins not in (INS.GET_DATA, INS.GET_DATA_ODD):
            raise _err(SW.INS_NOT_SUPPORTED)
        if not self.scp.is_authenticated:
            raise _err(SW.SECURITY_STATUS_NOT_SATISFIED)
        _, ins, p1, p2, data = self.scp.unwrap_command(
            apdu.cla, apdu.ins, apdu.p1, apdu.p2, apdu.data, extended=bool(apdu.extended)
        )
        sw: int
        if ins in (INS.GET_DATA, INS.GET_DATA_ODD):
            out, sw = self._get_data(p1, p2, data), SW.NO_ERROR
        else:
            if not (self.scp.security_level or 0) & C_MAC:
                raise _err(SW.SECURITY_STATUS_NOT_SATISFIED)  # level 00 manages nothing
            assert handler is not None
            try:
                result = handler(self, p1, p2, data)
            except (TLVError, KeySetError) as exc:
                raise _err(getattr(exc, "sw", SW.WRONG_DATA)) from None
            out, sw = result if isinstance(result, tuple) else (result, SW.NO_ERROR)
        return ResponseAPDU(self.scp.wrap_response(out, sw), sw)


_Handler = Callable[["SecurityDomain", int, int, bytes], bytes | tuple[bytes, int]]

#: INS → command handler (GPC 2.3.1 §11), vpicc's ``ins2handler`` shape, typed.
_HANDLERS: dict[int, _Handler] = {
    INS.INSTALL: SecurityDomain._install,
    INS.LOAD: SecurityDomain._load_cmd,
    INS.DELETE: SecurityDomain._delete,
    INS.GET_STATUS: SecurityDomain._get_status,
    INS.SET_STATUS: SecurityDomain._set_status,
    INS.PUT_KEY: SecurityDomain._put_key,
    INS.STORE_DATA: SecurityDomain._store_data,
}

register_applet_class(SD_CLASS_NAME, SecurityDomain)
