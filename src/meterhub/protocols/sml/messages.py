"""SML messages (SML 1.04 / BSI TR-03109-1 Anlage IV).

``SML_Message`` is a SEQUENCE of transactionId, groupNo, abortOnError,
messageBody (a CHOICE tagged with an Unsigned32), crc16 and endOfSmlMsg.  The CRC-16/X.25
covers every byte of the message before the crc16 element.  Bodies implemented:

=====================  ======  ==========================================
SML_PublicOpen.Req      0x0100  :class:`OpenRequest`
SML_PublicOpen.Res      0x0101  :class:`OpenResponse`
SML_PublicClose.Req     0x0200  :class:`CloseRequest`
SML_PublicClose.Res     0x0201  :class:`CloseResponse`
SML_GetProfileList.Req  0x0400  :class:`GetProfileListRequest`
SML_GetProfileList.Res  0x0401  :class:`GetProfileListResponse`
SML_GetList.Req         0x0700  :class:`GetListRequest`
SML_GetList.Res         0x0701  :class:`GetListResponse`
SML_Attention.Res       0xFF01  :class:`AttentionResponse`
=====================  ======  ==========================================

Any other tag raises :class:`SMLUnknownTagError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Protocol, Self

from .crc import crc16_x25_wire
from .errors import SMLCRCError, SMLStructureError, SMLTruncatedError, SMLUnknownTagError
from .tl import Reader, Writer
from .values import ListEntry, PeriodEntry, SmlTime, check_end, decode_list, encode_opt_time

__all__ = [
    "ATTENTION",
    "AttentionResponse",
    "CloseRequest",
    "CloseResponse",
    "GetListRequest",
    "GetListResponse",
    "GetProfileListRequest",
    "GetProfileListResponse",
    "MessageBody",
    "OpenRequest",
    "OpenResponse",
    "SmlMessage",
    "decode_messages",
    "encode_messages",
]

# SML_Attention.Res attentionNo values (SML 1.04 table "Attention-Nummern"), 6 bytes each
ATTENTION: dict[str, bytes] = {
    "ok": bytes.fromhex("8181c7c7fd00"),
    "error": bytes.fromhex("8181c7c7fe00"),  # error not further specified
    "unknown_sml_id": bytes.fromhex("8181c7c7fe01"),
    "not_authorized": bytes.fromhex("8181c7c7fe02"),
    "no_server_id": bytes.fromhex("8181c7c7fe03"),
    "no_request_field": bytes.fromhex("8181c7c7fe04"),
    "cannot_read": bytes.fromhex("8181c7c7fe06"),
    "parser_error": bytes.fromhex("8181c7c7fe08"),  # raw data cannot be interpreted
    "crc_error": bytes.fromhex("8181c7c7fe0b"),
    "unexpected_message": bytes.fromhex("8181c7c7fe0d"),
    "unsupported_data_type": bytes.fromhex("8181c7c7fe0f"),
    "missing_close": bytes.fromhex("8181c7c7fe14"),
}


class _Body(Protocol):
    TAG: ClassVar[int]

    def encode(self, w: Writer) -> None: ...


def _body_bytes(body: _Body) -> bytes:
    w = Writer()
    body.encode(w)
    return w.getvalue()


class _BodyMixin:
    """``to_bytes``/``from_bytes`` of a bare message body (without the envelope)."""

    __slots__ = ()
    # What every body class defines (its tag, its encoder and decoder); declared
    # here for the type checker only, so that a body missing one fails mypy.
    TAG: ClassVar[int]
    if TYPE_CHECKING:

        def encode(self, w: Writer) -> None: ...

        @classmethod
        def decode(cls, r: Reader) -> Self: ...

    def to_bytes(self) -> bytes:
        return _body_bytes(self)

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        r = Reader(data)
        body = cls.decode(r)
        check_end(r, cls.__name__)
        return body


def _octet_list(w: Writer, items: list[bytes]) -> None:
    w.list_of(len(items))
    for item in items:
        w.octets(item)


def _decode_octet_list(r: Reader, what: str) -> list[bytes]:
    n = r.list_of(None, what)
    return [r.octets(what) for _ in range(n)]


@dataclass(frozen=True, slots=True)
class OpenRequest(_BodyMixin):
    """SML_PublicOpen.Req (SML 1.04), 7 elements."""

    TAG: ClassVar[int] = 0x0100
    client_id: bytes
    req_file_id: bytes
    codepage: bytes | None = None
    server_id: bytes | None = None
    username: bytes | None = None
    password: bytes | None = None
    sml_version: int | None = None

    def encode(self, w: Writer) -> None:
        w.list_of(7)
        w.opt_octets(self.codepage)
        w.octets(self.client_id)
        w.octets(self.req_file_id)
        w.opt_octets(self.server_id)
        w.opt_octets(self.username)
        w.opt_octets(self.password)
        w.opt_integer(self.sml_version, "u8")

    @classmethod
    def decode(cls, r: Reader) -> OpenRequest:
        r.list_of(7, "SML_PublicOpen.Req")
        codepage = r.opt_octets("codepage")
        client_id = r.octets("clientId")
        req_file_id = r.octets("reqFileId")
        server_id = r.opt_octets("serverId")
        username = r.opt_octets("username")
        password = r.opt_octets("password")
        version = r.opt_uint(1, "smlVersion")
        return cls(client_id, req_file_id, codepage, server_id, username, password, version)


@dataclass(frozen=True, slots=True)
class OpenResponse(_BodyMixin):
    """SML_PublicOpen.Res (SML 1.04), 6 elements."""

    TAG: ClassVar[int] = 0x0101
    req_file_id: bytes
    server_id: bytes
    codepage: bytes | None = None
    client_id: bytes | None = None
    ref_time: SmlTime | None = None
    sml_version: int | None = None

    def encode(self, w: Writer) -> None:
        w.list_of(6)
        w.opt_octets(self.codepage)
        w.opt_octets(self.client_id)
        w.octets(self.req_file_id)
        w.octets(self.server_id)
        encode_opt_time(w, self.ref_time)
        w.opt_integer(self.sml_version, "u8")

    @classmethod
    def decode(cls, r: Reader) -> OpenResponse:
        r.list_of(6, "SML_PublicOpen.Res")
        codepage = r.opt_octets("codepage")
        client_id = r.opt_octets("clientId")
        req_file_id = r.octets("reqFileId")
        server_id = r.octets("serverId")
        ref_time = SmlTime.decode_opt(r)
        version = r.opt_uint(1, "smlVersion")
        return cls(req_file_id, server_id, codepage, client_id, ref_time, version)


@dataclass(frozen=True, slots=True)
class CloseRequest(_BodyMixin):
    """SML_PublicClose.Req (SML 1.04): globalSignature OPTIONAL."""

    TAG: ClassVar[int] = 0x0200
    global_signature: bytes | None = None

    def encode(self, w: Writer) -> None:
        w.list_of(1)
        w.opt_octets(self.global_signature)

    @classmethod
    def decode(cls, r: Reader) -> CloseRequest:
        r.list_of(1, "SML_PublicClose.Req")
        return cls(r.opt_octets("globalSignature"))


@dataclass(frozen=True, slots=True)
class CloseResponse(_BodyMixin):
    """SML_PublicClose.Res (SML 1.04): globalSignature OPTIONAL."""

    TAG: ClassVar[int] = 0x0201
    global_signature: bytes | None = None

    def encode(self, w: Writer) -> None:
        w.list_of(1)
        w.opt_octets(self.global_signature)

    @classmethod
    def decode(cls, r: Reader) -> CloseResponse:
        r.list_of(1, "SML_PublicClose.Res")
        return cls(r.opt_octets("globalSignature"))


@dataclass(frozen=True, slots=True)
class GetListRequest(_BodyMixin):
    """SML_GetList.Req (SML 1.04), 5 elements."""

    TAG: ClassVar[int] = 0x0700
    client_id: bytes
    server_id: bytes | None = None
    username: bytes | None = None
    password: bytes | None = None
    list_name: bytes | None = None

    def encode(self, w: Writer) -> None:
        w.list_of(5)
        w.octets(self.client_id)
        w.opt_octets(self.server_id)
        w.opt_octets(self.username)
        w.opt_octets(self.password)
        w.opt_octets(self.list_name)

    @classmethod
    def decode(cls, r: Reader) -> GetListRequest:
        r.list_of(5, "SML_GetList.Req")
        return cls(
            r.octets("clientId"),
            r.opt_octets("serverId"),
            r.opt_octets("username"),
            r.opt_octets("password"),
            r.opt_octets("listName"),
        )


@dataclass(frozen=True, slots=True)
class GetListResponse(_BodyMixin):
    """SML_GetList.Res (SML 1.04): clientId?, serverId, listName?, actSensorTime?,
    valList, listSignature?, actGatewayTime?."""

    TAG: ClassVar[int] = 0x0701
    server_id: bytes
    val_list: tuple[ListEntry, ...] = ()
    client_id: bytes | None = None
    list_name: bytes | None = None
    act_sensor_time: SmlTime | None = None
    list_signature: bytes | None = None
    act_gateway_time: SmlTime | None = None

    def encode(self, w: Writer) -> None:
        w.list_of(7)
        w.opt_octets(self.client_id)
        w.octets(self.server_id)
        w.opt_octets(self.list_name)
        encode_opt_time(w, self.act_sensor_time)
        w.list_of(len(self.val_list))
        for entry in self.val_list:
            entry.encode(w)
        w.opt_octets(self.list_signature)
        encode_opt_time(w, self.act_gateway_time)

    @classmethod
    def decode(cls, r: Reader) -> GetListResponse:
        r.list_of(7, "SML_GetList.Res")
        client_id = r.opt_octets("clientId")
        server_id = r.octets("serverId")
        list_name = r.opt_octets("listName")
        act_sensor_time = SmlTime.decode_opt(r)
        val_list = tuple(decode_list(r, ListEntry, "valList"))
        list_signature = r.opt_octets("listSignature")
        act_gateway_time = SmlTime.decode_opt(r)
        return cls(
            server_id,
            val_list,
            client_id,
            list_name,
            act_sensor_time,
            list_signature,
            act_gateway_time,
        )


@dataclass(frozen=True, slots=True)
class GetProfileListRequest(_BodyMixin):
    """SML_GetProfileList.Req (SML 1.04), 9 elements.  ``das_details`` (an
    SML_Tree) is carried as its raw encoding."""

    TAG: ClassVar[int] = 0x0400
    parameter_tree_path: tuple[bytes, ...]
    server_id: bytes | None = None
    username: bytes | None = None
    password: bytes | None = None
    with_rawdata: bool | None = None
    begin_time: SmlTime | None = None
    end_time: SmlTime | None = None
    object_list: tuple[bytes, ...] | None = None
    das_details_raw: bytes | None = None

    def encode(self, w: Writer) -> None:
        w.list_of(9)
        w.opt_octets(self.server_id)
        w.opt_octets(self.username)
        w.opt_octets(self.password)
        if self.with_rawdata is None:
            w.absent()
        else:
            w.boolean(self.with_rawdata)
        encode_opt_time(w, self.begin_time)
        encode_opt_time(w, self.end_time)
        _octet_list(w, list(self.parameter_tree_path))
        if self.object_list is None:
            w.absent()
        else:
            _octet_list(w, list(self.object_list))
        if self.das_details_raw is None:
            w.absent()
        else:
            w.raw(self.das_details_raw)

    @classmethod
    def decode(cls, r: Reader) -> GetProfileListRequest:
        r.list_of(9, "SML_GetProfileList.Req")
        server_id = r.opt_octets("serverId")
        username = r.opt_octets("username")
        password = r.opt_octets("password")
        with_rawdata = r.opt_boolean("withRawdata")
        begin = SmlTime.decode_opt(r)
        end = SmlTime.decode_opt(r)
        path = tuple(_decode_octet_list(r, "parameterTreePath"))
        objects = None if r.absent() else tuple(_decode_octet_list(r, "object_List"))
        das = None if r.absent() else r.raw_element("dasDetails")
        return cls(path, server_id, username, password, with_rawdata, begin, end, objects, das)


@dataclass(frozen=True, slots=True)
class GetProfileListResponse(_BodyMixin):
    """SML_GetProfileList.Res (SML 1.04): serverId, actTime, regPeriod,
    parameterTreePath, valTime, status, period_List, rawdata?, periodSignature?.

    One response carries one capture period (``val_time``); a day of 15-minute load
    profile is 96 responses in one file."""

    TAG: ClassVar[int] = 0x0401
    server_id: bytes
    act_time: SmlTime
    reg_period: int
    parameter_tree_path: tuple[bytes, ...]
    val_time: SmlTime
    status: int
    period_list: tuple[PeriodEntry, ...] = ()
    rawdata: bytes | None = None
    period_signature: bytes | None = None

    def encode(self, w: Writer) -> None:
        w.list_of(9)
        w.octets(self.server_id)
        self.act_time.encode(w)
        w.integer(self.reg_period, "u32")
        _octet_list(w, list(self.parameter_tree_path))
        self.val_time.encode(w)
        w.integer(self.status, "u64")
        w.list_of(len(self.period_list))
        for entry in self.period_list:
            entry.encode(w)
        w.opt_octets(self.rawdata)
        w.opt_octets(self.period_signature)

    @classmethod
    def decode(cls, r: Reader) -> GetProfileListResponse:
        r.list_of(9, "SML_GetProfileList.Res")
        server_id = r.octets("serverId")
        act_time = SmlTime.decode(r)
        reg_period = r.uint(4, "regPeriod")
        path = tuple(_decode_octet_list(r, "parameterTreePath"))
        val_time = SmlTime.decode(r)
        status = r.uint(8, "status")
        periods = tuple(decode_list(r, PeriodEntry, "period_List"))
        rawdata = r.opt_octets("rawdata")
        signature = r.opt_octets("periodSignature")
        return cls(
            server_id, act_time, reg_period, path, val_time, status, periods, rawdata, signature
        )


@dataclass(frozen=True, slots=True)
class AttentionResponse(_BodyMixin):
    """SML_Attention.Res (SML 1.04): serverId, attentionNo (6 bytes, see
    :data:`ATTENTION`), attentionMsg?, attentionDetails? (an SML_Tree, kept raw)."""

    TAG: ClassVar[int] = 0xFF01
    server_id: bytes
    attention_no: bytes
    attention_msg: bytes | None = None
    attention_details_raw: bytes | None = None

    def encode(self, w: Writer) -> None:
        w.list_of(4)
        w.octets(self.server_id)
        w.octets(self.attention_no)
        w.opt_octets(self.attention_msg)
        if self.attention_details_raw is None:
            w.absent()
        else:
            w.raw(self.attention_details_raw)

    @classmethod
    def decode(cls, r: Reader) -> AttentionResponse:
        r.list_of(4, "SML_Attention.Res")
        server_id = r.octets("serverId")
        number = r.octets("attentionNo")
        msg = r.opt_octets("attentionMsg")
        details = None if r.absent() else r.raw_element("attentionDetails")
        return cls(server_id, number, msg, details)


MessageBody = (
    OpenRequest
    | OpenResponse
    | CloseRequest
    | CloseResponse
    | GetListRequest
    | GetListResponse
    | GetProfileListRequest
    | GetProfileListResponse
    | AttentionResponse
)

_BODIES: dict[int, type[MessageBody]] = {
    cls.TAG: cls
    for cls in (
        OpenRequest,
        OpenResponse,
        CloseRequest,
        CloseResponse,
        GetListRequest,
        GetListResponse,
        GetProfileListRequest,
        GetProfileListResponse,
        AttentionResponse,
    )
}


@dataclass(frozen=True, slots=True)
class SmlMessage:
    """SML_Message (SML 1.04) with its CRC-16/X.25 computed on encode and
    checked on decode.  ``body`` is one of the message-body classes."""

    transaction_id: bytes
    body: MessageBody
    group_no: int = 0
    abort_on_error: int = 0

    def encode(self, w: Writer) -> None:
        start = len(w.out)
        w.list_of(6)
        w.octets(self.transaction_id)
        w.integer(self.group_no, "u8")
        w.integer(self.abort_on_error, "u8")
        w.list_of(2)
        # the body tag is an Unsigned32; meters send it shortened to two bytes (63 xx xx)
        w.integer(self.body.TAG, "u16")
        self.body.encode(w)
        crc = crc16_x25_wire(w.out[start:])
        w.integer(crc, "u16")
        w.out.append(0x00)  # endOfSmlMsg

    def to_bytes(self) -> bytes:
        w = Writer()
        self.encode(w)
        return w.getvalue()

    @classmethod
    def decode(cls, r: Reader, *, check_crc: bool = True) -> SmlMessage:
        """Decode one message at the reader's position; the CRC is checked before the
        body is interpreted, so corruption reports as :class:`SMLCRCError`.

        ``check_crc=False`` exists only for published captures whose contents were
        anonymised after capture (server ids zeroed), which breaks their message CRCs.
        """
        start = r.pos
        r.list_of(6, "SML_Message")
        transaction_id = r.octets("transactionId")
        group_no = r.uint(1, "groupNo")
        abort_on_error = r.uint(1, "abortOnError")
        r.list_of(2, "messageBody")
        tag = r.uint(4, "messageBody tag")
        body_pos = r.pos
        r.skip()
        crc_pos = r.pos
        crc = r.uint(2, "crc16")
        if r.peek() != 0x00:
            raise SMLStructureError(f"endOfSmlMsg missing at offset {r.pos}")
        r.pos += 1
        end = r.pos
        expected = crc16_x25_wire(r.buf[start:crc_pos])
        if check_crc and crc != expected:
            raise SMLCRCError(f"message CRC {crc:04x} != computed {expected:04x} at offset {start}")
        body_cls = _BODIES.get(tag)
        if body_cls is None:
            raise SMLUnknownTagError(f"unknown or unsupported message body tag {tag:#06x}")
        body_reader = Reader(r.buf, body_pos, crc_pos)
        body = body_cls.decode(body_reader)
        check_end(body_reader, body_cls.__name__)
        r.pos = end
        return cls(transaction_id, body, group_no, abort_on_error)

    @classmethod
    def from_bytes(cls, data: bytes, *, check_crc: bool = True) -> SmlMessage:
        """Decode exactly one message; trailing bytes are an error."""
        r = Reader(data)
        msg = cls.decode(r, check_crc=check_crc)
        check_end(r, "SML_Message")
        return msg


def encode_messages(messages: list[SmlMessage]) -> bytes:
    """Concatenate encoded messages (the payload of a transport file)."""
    w = Writer()
    for msg in messages:
        msg.encode(w)
    return w.getvalue()


def decode_messages(payload: bytes, *, check_crc: bool = True) -> list[SmlMessage]:
    """Decode a payload made only of whole SML messages (each CRC checked)."""
    r = Reader(payload)
    out: list[SmlMessage] = []
    while r.pos < r.end:
        out.append(SmlMessage.decode(r, check_crc=check_crc))
    if not out:
        raise SMLTruncatedError("payload holds no SML message")
    return out
