"""GlobalPlatform (GPC 2.3.1) protocol pieces shared by the card and its hosts, sans-IO.

* :mod:`.constants` - INS codes, privileges, life-cycle states, the ISD AID;
* :mod:`.keys` - SCP03 static key sets and key check values (Amendment D §7.2);
* :mod:`.scp03` - Secure Channel Protocol '03' (Amendment D): key derivation,
  secure messaging, the card session and the host session;
* :mod:`.commands` - strict parsers of GP command data (INSTALL, DELETE, GET STATUS,
  PUT KEY), raising the status word a card answers with;
* :mod:`.host` - the off-card side: command builders, response parsers and
  :class:`~.host.GPClient`, a management session over any ``transmit(apdu)``.

The on-card card manager that uses these is :mod:`meterhub.card.gp`. See docs/gp.md
and docs/scp03.md.
"""
