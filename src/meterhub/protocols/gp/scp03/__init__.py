"""Secure Channel Protocol '03' (GlobalPlatform Card Specification v2.3.1 Amendment D).

Sans-IO implementation of both ends of an SCP03 secure channel:

* :class:`SCP03CardSession` - the security domain side (the hub's card manager feeds it
  INITIALIZE UPDATE, EXTERNAL AUTHENTICATE and every protected command of the session);
* :class:`SCP03HostSession` - the off-card entity side (the utility's TSM, tests).

Both work on plain bytes and small tuples; nothing here opens a socket or parses more of
ISO 7816-4 than the SCP03 wrapping needs. Section numbers refer to Amendment D v1.1.2
("Secure Channel Protocol '03'"); key derivation is NIST SP 800-108 counter mode with
AES-CMAC (NIST SP 800-38B) as PRF, exactly as §6.2.1 lays out the derivation data.

Choices made where the specification leaves room, kept identical on both sides:

* The encryption counter starts at 1 after EXTERNAL AUTHENTICATE and is incremented for
  *every* command of the session, with or without a data field (§6.2.6). An empty data
  field is not encrypted; a card nevertheless accepts one padded block ``80 00..00`` and
  treats it as empty data, because yubikit's SCP03 encrypts empty bodies.
* For the C-MAC the class byte is the secure-messaging class with the logical channel bits
  cleared (``(CLA & 0x80) | 0x04``), so the MAC does not depend on the channel number.
* Lc inside the MAC input is one byte up to 255 data bytes, else the 3-byte extended form.
* R-MAC and R-ENCRYPTION apply only to responses with SW '9000' or a warning '62xx'/'63xx';
  an error status word travels unprotected (§6.2.5).
"""

from __future__ import annotations

from .card_session import (
    SCP03CardSession,
)
from .host_session import (
    SCP03HostSession,
)
from .kdf import (
    C_DECRYPTION,
    C_MAC,
    DDC_CARD_CHALLENGE,
    DDC_CARD_CRYPTOGRAM,
    DDC_HOST_CRYPTOGRAM,
    DDC_S_ENC,
    DDC_S_MAC,
    DDC_S_RMAC,
    I_PSEUDO_RANDOM,
    I_R_ENCRYPTION,
    I_R_MAC,
    I_S16,
    NO_SECURE_MESSAGING,
    R_ENCRYPTION,
    R_MAC,
    SECURITY_LEVELS,
    SEQUENCE_COUNTER_MAX,
    SCP03Error,
    SessionKeys,
    aes_cmac,
    card_cryptogram,
    derive_session_keys,
    host_cryptogram,
    kdf_counter_cmac,
    pad80,
    pseudo_random_card_challenge,
    scp03_kdf,
    unpad80,
)
from .messaging import (
    MemoryCounterStore,
    SequenceCounterStore,
)

__all__ = [
    "C_DECRYPTION",
    "C_MAC",
    "DDC_CARD_CHALLENGE",
    "DDC_CARD_CRYPTOGRAM",
    "DDC_HOST_CRYPTOGRAM",
    "DDC_S_ENC",
    "DDC_S_MAC",
    "DDC_S_RMAC",
    "I_PSEUDO_RANDOM",
    "I_R_ENCRYPTION",
    "I_R_MAC",
    "I_S16",
    "NO_SECURE_MESSAGING",
    "R_ENCRYPTION",
    "R_MAC",
    "SECURITY_LEVELS",
    "SEQUENCE_COUNTER_MAX",
    "MemoryCounterStore",
    "SCP03CardSession",
    "SCP03Error",
    "SCP03HostSession",
    "SequenceCounterStore",
    "SessionKeys",
    "aes_cmac",
    "card_cryptogram",
    "derive_session_keys",
    "host_cryptogram",
    "kdf_counter_cmac",
    "pad80",
    "pseudo_random_card_challenge",
    "scp03_kdf",
    "unpad80",
]
