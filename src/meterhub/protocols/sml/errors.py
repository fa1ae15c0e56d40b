"""Typed errors of the SML codec (SML 1.04, BSI TR-03109-1 Anlage IV).

Every malformed input surfaces as a subclass of :class:`SMLError` with a one-line
message; nothing else may escape a decoder.
"""

from __future__ import annotations

from ...errors import MeterhubError

__all__ = [
    "SMLCRCError",
    "SMLEncodeError",
    "SMLError",
    "SMLEscapeError",
    "SMLLengthError",
    "SMLStructureError",
    "SMLTruncatedError",
    "SMLTypeError",
    "SMLUnknownTagError",
]


class SMLError(MeterhubError, ValueError):
    """Base class of every SML decoding or encoding failure."""


class SMLTruncatedError(SMLError):
    """The input ended before the structure it announced was complete."""


class SMLLengthError(SMLError):
    """A type-length field announces an impossible length (SML 1.04, "Type-Length-Field")."""


class SMLCRCError(SMLError):
    """A CRC-16/X.25 over a message ("SML_Message") or over a file (transport v1) does not match."""


class SMLEscapeError(SMLError):
    """An escape sequence of transport protocol v1 ("SML-Transport-Protokoll Version 1") is malformed."""


class SMLUnknownTagError(SMLError):
    """A type nibble, message-body tag or CHOICE tag that SML 1.04 does not define."""


class SMLTypeError(SMLError):
    """An element has a valid encoding but the wrong type for its field."""


class SMLStructureError(SMLError):
    """A SEQUENCE has the wrong number of elements, or bytes trail a structure."""


class SMLEncodeError(SMLError):
    """A value cannot be encoded (out of range for its SML type, bad OBIS length, ...)."""
