"""Sans-IO request handling of meterhub's SML server side.

A client sends a request file (SML 1.04: PublicOpen.Req, GetList.Req or
GetProfileList.Req, PublicClose.Req); the meter answers with a response file.  A
request it cannot parse or does not serve is answered with ``SML_Attention.Res``
(SML 1.04 "Attention-Nummern") instead of being dropped.
"""

from __future__ import annotations

from collections.abc import Callable

from .errors import SMLCRCError, SMLError, SMLUnknownTagError
from .messages import (
    ATTENTION,
    AttentionResponse,
    CloseRequest,
    CloseResponse,
    GetListRequest,
    GetProfileListRequest,
    OpenRequest,
    OpenResponse,
    SmlMessage,
)
from .transport import encode_file, parse_file

__all__ = ["attention_file", "attention_for", "handle_request"]


def attention_for(exc: SMLError) -> bytes:
    """The attentionNo that best describes a decoding failure."""
    if isinstance(exc, SMLCRCError):
        return ATTENTION["crc_error"]
    if isinstance(exc, SMLUnknownTagError):
        return ATTENTION["unknown_sml_id"]
    return ATTENTION["parser_error"]


def attention_file(server_id: bytes, attention_no: bytes, message: str | None = None) -> bytes:
    """A response file OpenRes, Attention.Res, CloseRes."""
    msg = None if message is None else message.encode("utf-8")[:255]
    return encode_file(
        [
            SmlMessage(b"ATT\x01", OpenResponse(b"ATT", server_id)),
            SmlMessage(b"ATT\x02", AttentionResponse(server_id, attention_no, msg)),
            SmlMessage(b"ATT\x03", CloseResponse()),
        ]
    )


def handle_request(
    request: bytes,
    *,
    server_id: bytes,
    get_list: Callable[[], bytes],
    get_profile: Callable[[], bytes] | None = None,
) -> bytes:
    """Answer one request file.

    ``get_list`` returns the current push file (answer to GetList.Req) and
    ``get_profile`` the load-profile file (answer to GetProfileList.Req).  Parse
    errors, requests for another server id and unsupported requests yield an
    Attention.Res file; this function never raises for bad input.
    """
    try:
        messages = parse_file(request)
    except SMLError as exc:
        return attention_file(server_id, attention_for(exc), str(exc))
    bodies = [m.body for m in messages]
    if not bodies or not isinstance(bodies[0], OpenRequest):
        return attention_file(server_id, ATTENTION["unexpected_message"], "file must open")
    if not isinstance(bodies[-1], CloseRequest):
        return attention_file(server_id, ATTENTION["missing_close"], "file must close")
    open_req = bodies[0]
    if open_req.server_id not in (None, server_id):
        return attention_file(server_id, ATTENTION["no_server_id"], "unknown server id")
    inner = bodies[1:-1]
    if len(inner) != 1:
        return attention_file(server_id, ATTENTION["unexpected_message"], "one request expected")
    req = inner[0]
    if isinstance(req, GetListRequest):
        return get_list()
    if isinstance(req, GetProfileListRequest) and get_profile is not None:
        return get_profile()
    return attention_file(server_id, ATTENTION["unexpected_message"], "request not served")
