"""The xDLMS GET service of one server association (Green Book 1000-2 Ed. 9 §9.3.6).

GET normal, GET with list and GET next with block transfer ("GET with block
transfer"), each attribute read through the association's object list (Blue Book
§4.4.3: what a client does not see is ``object-undefined`` to it) and the objects'
selective access. It keeps the one long GET in progress; the association's state
machine (:mod:`.state`) decides when GET is allowed at all.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from dlms_cosem import enumerations as enums

from . import axdr
from .access import DataAccessError, parse_selection
from .addressing import MANAGEMENT_LOGICAL_DEVICE
from .apdu import (
    ApduError,
    AttributeRequest,
    Tag,
    encode_block_error,
    encode_exception_response,
    encode_get_response_block,
    encode_get_response_error,
    encode_get_response_normal,
    encode_list_results,
    parse_get_request,
)
from .cosem import AssociationLN, CosemObject, encode_object_list
from .initiate import Conformance

__all__ = ["BLOCK_HEADER", "GetService"]

LOG = logging.getLogger(__name__)

#: Get-Response-With-Datablock header: tag, choice, invoke, last, block (4), choice, length (<=3).
BLOCK_HEADER = 12


class _Device(Protocol):
    @property
    def objects(self) -> Mapping[bytes, CosemObject]: ...
    @property
    def public_objects(self) -> frozenset[bytes]: ...


class AssociationView(Protocol):
    """What the GET service reads of its association (all read-only)."""

    @property
    def server(self) -> _Device: ...
    @property
    def client_sap(self) -> int: ...
    @property
    def ciphered(self) -> bool: ...
    @property
    def conformance(self) -> Conformance: ...
    @property
    def max_send(self) -> int: ...


@dataclass
class _LongGet:
    """A GET answered with block transfer (Green Book §9.3.6, "GET with block transfer")."""

    invoke: int
    raw: bytes
    offset: int = 0
    block: int = 0



class GetService:
    """GET for one association; ``handle(get-request) -> get-response``, never raises
    on bad input (an ExceptionResponse or a Data-Access-Result instead)."""

    def __init__(self, association: AssociationView) -> None:
        self.association = association
        self._long_get: _LongGet | None = None

    def abandon(self) -> None:
        """Forget a long GET in progress (the association was released)."""
        self._long_get = None

    def _read(self, item: AttributeRequest) -> bytes | enums.DataAccessResult:
        obj = self.association.server.objects.get(item.logical_name)
        if obj is None or not self._visible(item.logical_name):
            # Not in this association's object list (Blue Book §4.4.3): undefined to it.
            return enums.DataAccessResult.OBJECT_UNDEFINED
        if obj.class_id != item.class_id:
            return enums.DataAccessResult.OBJECT_CLASS_INCONSISTENT
        if obj.confidential and not self.association.ciphered:
            return enums.DataAccessResult.READ_WRITE_DENIED
        if isinstance(obj, AssociationLN) and item.attribute in (2, 3) and item.selector is None:
            return self._association_attribute(item.attribute)
        try:
            selection = None
            if item.selector is not None:
                if Conformance.SELECTIVE_ACCESS not in self.association.conformance:
                    return enums.DataAccessResult.READ_WRITE_DENIED
                selection = parse_selection(item.selector, item.parameters)
            return obj.get(item.attribute, selection)
        except DataAccessError as exc:
            return exc.result
        except Exception:  # the data source failed; the meter keeps answering
            LOG.exception("data source failed reading %s", item)
            return enums.DataAccessResult.HARDWARE_FAULT

    def _association_attribute(self, attribute: int) -> bytes:
        """Association LN attributes that depend on this association (Blue Book §4.4.3):
        2 ``object_list`` (what this client sees) and 3 ``associated_partners_id``."""
        if attribute == 2:
            return encode_object_list(
                [o for ln, o in self.association.server.objects.items() if self._visible(ln)]
            )
        return axdr.structure([axdr.integer(self.association.client_sap), axdr.long_unsigned(MANAGEMENT_LOGICAL_DEVICE)])

    def _visible(self, logical_name: bytes) -> bool:
        """Is the object in this association's object list? The management association
        (authenticated, ciphered) sees all; the public client only ``public_objects``."""
        return self.association.ciphered or logical_name in self.association.server.public_objects

    def handle(self, plain: bytes) -> bytes:
        """GET normal / next / with-list (Green Book §9.3.6), with block transfer."""
        if Conformance.GET not in self.association.conformance:
            return _exc(enums.StateException.SERVICE_NOT_ALLOWED, enums.ServiceException.SERVICE_NOT_SUPPORTED)
        try:
            req = parse_get_request(plain)
        except ApduError:
            return _exc(enums.StateException.SERVICE_NOT_ALLOWED, enums.ServiceException.OTHER_REASON)
        if req.kind == 2:
            return self._get_next(req.invoke, req.block_number)
        self._long_get = None  # a new GET abandons a long GET in progress
        if req.kind == 3:
            if Conformance.MULTIPLE_REFERENCES not in self.association.conformance:
                return _exc(enums.StateException.SERVICE_NOT_ALLOWED, enums.ServiceException.SERVICE_NOT_SUPPORTED)
            raw = encode_list_results([self._read(i) for i in req.items])
            if 3 + len(raw) <= self.association.max_send:
                return bytes([Tag.GET_RESPONSE, 3, req.invoke]) + raw
            return self._start_long_get(req.invoke, raw)
        result = self._read(req.items[0])
        if isinstance(result, enums.DataAccessResult):
            return encode_get_response_error(req.invoke, result)
        if 4 + len(result) <= self.association.max_send:
            return encode_get_response_normal(req.invoke, result)
        return self._start_long_get(req.invoke, result)

    def _start_long_get(self, invoke: int, raw: bytes) -> bytes:
        if Conformance.BLOCK_TRANSFER_WITH_GET_OR_READ not in self.association.conformance:
            return encode_get_response_error(invoke, enums.DataAccessResult.OTHER_REASON)
        self._long_get = _LongGet(invoke, raw)
        return self._next_block()

    def _get_next(self, invoke: int, block_number: int) -> bytes:
        lg = self._long_get
        if lg is None:
            return encode_block_error(invoke, block_number, enums.DataAccessResult.NO_LONG_GET_IN_PROGRESS)
        if block_number != lg.block:
            self._long_get = None
            return encode_block_error(invoke, block_number, enums.DataAccessResult.DATA_BLOCK_NUMBER_INVALID)
        return self._next_block()

    def _next_block(self) -> bytes:
        lg = self._long_get
        assert lg is not None
        size = self.association.max_send - BLOCK_HEADER
        chunk = lg.raw[lg.offset : lg.offset + size]
        lg.offset += len(chunk)
        lg.block += 1
        last = lg.offset >= len(lg.raw)
        if last:
            self._long_get = None
        return encode_get_response_block(lg.invoke, lg.block, chunk, last)


def _exc(state: enums.StateException, service: enums.ServiceException) -> bytes:
    return encode_exception_response(state, service)
