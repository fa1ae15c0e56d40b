"""xDLMS APDU helpers the server needs beyond what ``dlms_cosem`` encodes correctly.

IEC 62056-5-3 / Green Book 1000-2 Ed. 9 §9.3 (xDLMS services) and §9.5 (the
ASN.1 of the APDUs). ``dlms_cosem`` provides the message classes; here are:

* a bounded GET-request parser (``Get-Request-Normal``, ``-Next``, ``-With-List``)
  that keeps selective-access parameters as raw ``Data`` so meterhub decodes its
  date-times itself (``dlms_cosem`` turns a zero deviation into a naive datetime)
  and accepts any interface class id (``CosemAttribute.from_bytes`` raises on one it
  does not know, which must become a ``Data-Access-Result``, not a crash);
* ``encode_get_response_normal``: ``GetResponseNormal.to_bytes`` raises TypeError
  (it ``append``-s the bytes of the invoke-id);
* ``encode_exception_response``: ``ExceptionResponse.to_bytes`` writes the
  invocation counter of an invocation-counter-error as one byte.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dlms_cosem.enumerations import DataAccessResult, ServiceException, StateException
from dlms_cosem.protocol import xdlms

from ...errors import MeterhubError
from . import axdr

__all__ = [
    "ApduError",
    "Tag",
    "AttributeRequest",
    "GetRequest",
    "parse_get_request",
    "encode_get_response_normal",
    "encode_get_response_error",
    "encode_get_response_with_list",
    "encode_list_results",
    "encode_get_response_block",
    "encode_exception_response",
    "StateException",
    "ServiceException",
]


class ApduError(MeterhubError, ValueError):
    """An APDU that cannot be parsed."""


class Tag:
    """APDU tags (Green Book §9.5, ``XDLMS-APDU`` and ``ACSE-APDU`` CHOICEs)."""

    INITIATE_REQUEST = 0x01
    INITIATE_RESPONSE = 0x08
    CONFIRMED_SERVICE_ERROR = 0x0E
    DATA_NOTIFICATION = 0x0F
    AARQ = 0x60
    AARE = 0x61
    RLRQ = 0x62
    RLRE = 0x63
    GET_REQUEST = 0xC0
    SET_REQUEST = 0xC1
    ACTION_REQUEST = 0xC3
    GET_RESPONSE = 0xC4
    ACTION_RESPONSE = 0xC7
    EXCEPTION_RESPONSE = 0xD8
    GENERAL_GLO_CIPHERING = 0xDB


@dataclass(frozen=True)
class AttributeRequest:
    """``Cosem-Attribute-Descriptor`` plus optional ``Selective-Access-Descriptor``."""

    class_id: int
    logical_name: bytes
    attribute: int
    selector: int | None = None
    parameters: object = None


@dataclass(frozen=True)
class GetRequest:
    """A parsed ``Get-Request``; ``invoke`` is the raw Invoke-Id-And-Priority byte."""

    kind: int  # 1 normal, 2 next, 3 with-list
    invoke: int
    items: tuple[AttributeRequest, ...] = ()
    block_number: int = 0


#: Most attribute descriptors accepted in one GET-with-list.
MAX_LIST_ITEMS = 64


def _parse_descriptor(buf: bytes, pos: int) -> tuple[AttributeRequest, int]:
    if pos + 10 > len(buf):
        raise ApduError("truncated attribute descriptor")
    class_id = int.from_bytes(buf[pos : pos + 2], "big")
    ln = bytes(buf[pos + 2 : pos + 8])
    attribute = int.from_bytes(buf[pos + 8 : pos + 9], "big", signed=True)
    flag = buf[pos + 9]
    pos += 10
    if flag == 0:
        return AttributeRequest(class_id, ln, attribute), pos
    if flag != 1:
        raise ApduError("access-selection flag is not a boolean")
    if pos >= len(buf):
        raise ApduError("truncated access selection")
    selector = buf[pos]
    try:
        params, pos = axdr.decode_one(buf, pos + 1)
    except axdr.AxdrError as exc:
        raise ApduError(f"access parameters: {exc}") from None
    return AttributeRequest(class_id, ln, attribute, selector, params), pos


def parse_get_request(apdu: bytes) -> GetRequest:
    """Parse a Get-Request (Green Book §9.5); raises :class:`ApduError`, never reads past the end."""
    if len(apdu) < 3 or apdu[0] != Tag.GET_REQUEST:
        raise ApduError("not a get-request")
    kind, invoke = apdu[1], apdu[2]
    if kind == 1:
        item, pos = _parse_descriptor(apdu, 3)
        items: tuple[AttributeRequest, ...] = (item,)
        block = 0
    elif kind == 2:
        if len(apdu) != 7:
            raise ApduError("get-request-next is 7 bytes")
        return GetRequest(2, invoke, (), int.from_bytes(apdu[3:7], "big"))
    elif kind == 3:
        try:
            n, pos = axdr.decode_length(apdu, 3)
        except axdr.AxdrError as exc:
            raise ApduError(str(exc)) from None
        if not 0 < n <= MAX_LIST_ITEMS:
            raise ApduError(f"get-request-with-list of {n} items")
        parsed = []
        for _ in range(n):
            item, pos = _parse_descriptor(apdu, pos)
            parsed.append(item)
        items, block = tuple(parsed), 0
    else:
        raise ApduError(f"unknown get-request choice {kind}")
    if pos != len(apdu):
        raise ApduError("trailing bytes after get-request")
    return GetRequest(kind, invoke, items, block)


def encode_get_response_normal(invoke: int, data: bytes) -> bytes:
    """``Get-Response-Normal`` with ``Get-Data-Result`` = data (choice 0).

    Replaces ``dlms_cosem.protocol.xdlms.GetResponseNormal.to_bytes``, which
    raises TypeError; ``GetResponseNormal.from_bytes`` decodes this output.
    """
    return bytes([Tag.GET_RESPONSE, 1, invoke, 0]) + data


def encode_get_response_error(invoke: int, result: DataAccessResult) -> bytes:
    """``Get-Response-Normal`` with ``Get-Data-Result`` = data-access-result (choice 1)."""
    return _encoded(xdlms.GetResponseNormalWithError(result, _iip(invoke)))


def encode_list_results(results: list[bytes | DataAccessResult]) -> bytes:
    """``SEQUENCE OF Get-Data-Result`` (the raw data of a with-list response)."""
    out = bytearray(axdr.encode_length(len(results)))
    for r in results:
        if isinstance(r, DataAccessResult):
            out += bytes([1, r.value])
        else:
            out += b"\x00" + r
    return bytes(out)


def encode_get_response_with_list(invoke: int, results: list[bytes | DataAccessResult]) -> bytes:
    """``Get-Response-With-List``; ``dlms_cosem``'s encoder wants parsed objects,
    the server holds encoded bytes."""
    return bytes([Tag.GET_RESPONSE, 3, invoke]) + encode_list_results(results)


def encode_get_response_block(
    invoke: int, block_number: int, raw: bytes, last: bool
) -> bytes:
    """``Get-Response-With-Datablock`` (Green Book §9.3.6 block transfer) via ``dlms_cosem``."""
    cls = xdlms.GetResponseLastBlock if last else xdlms.GetResponseWithBlock
    return _encoded(cls(bytes(raw), block_number, _iip(invoke)))


def encode_block_error(invoke: int, block_number: int, result: DataAccessResult) -> bytes:
    """Last block carrying a data-access-result: ends a long GET."""
    return _encoded(xdlms.GetResponseLastBlockWithError(result, block_number, _iip(invoke)))


def encode_exception_response(
    state: StateException, service: ServiceException, invocation_counter: int | None = None
) -> bytes:
    """``ExceptionResponse`` (Green Book §9.5); for invocation-counter-error the
    expected counter is an Unsigned32, which ``ExceptionResponse.to_bytes`` cannot write."""
    out = bytes([Tag.EXCEPTION_RESPONSE, state.value, service.value])
    if service == ServiceException.INVOCATION_COUNTER_ERROR:
        out += (invocation_counter or 0).to_bytes(4, "big")
    return out


def _iip(invoke: int) -> xdlms.InvokeIdAndPriority:
    # Echo the request's invoke-id and priority (Green Book §9.3.2); dlms_cosem keeps
    # only the low 4 bits of the id, which is all a LN invoke-id has.
    return xdlms.InvokeIdAndPriority.from_bytes(bytes([invoke]))


def _encoded(apdu: Any) -> bytes:
    """``apdu.to_bytes()`` of a dlms_cosem APDU (the package ships no type information,
    so its classes are ``Any`` to mypy)."""
    out: bytes = apdu.to_bytes()
    return out
