"""The server association's state machine as one table (Green Book 1000-2 Ed. 9 §9.4.2).

Every request APDU is first classified into an :class:`Event`; the pair
``(state, event)`` then looks up one :class:`Transition` in :data:`TRANSITIONS`:
what the association does (an :class:`Action`) and, for each :class:`Outcome`
that action can have, the state it goes to. The table is total (every state
times every event has a row), so there is no path through
:meth:`~meterhub.protocols.dlms.server.ServerAssociation.handle` that is not
written here, and an event that is illegal in a state gets the protocol's own
refusal (an ExceptionResponse, an AARE rejection or a refused ACTION), never an
exception. This is the style of h11's ``_state.py`` and dlms-cosem's
``DLMS_STATE_TRANSITIONS``, for the server side.

The security layer sits below the table: in a ciphered association every APDU
after the AARQ must be glo-protected, and the table sees the deciphered service
(a deciphering or replay failure is answered before any transition). An ACSE APDU
or a ciphered APDU *inside* the protection is :attr:`Event.MISPLACED`.

Green Book §9.4.2 has more states (for the client side and for confirmed
release); a meter needs three:

* ``IDLE`` - no application association;
* ``AWAITING_HLS`` - an HLS-GMAC AARQ was accepted (AARE sent with StoC); only
  ``reply_to_HLS_authentication`` (HLS pass 3, §9.2.7.4) may follow;
* ``ASSOCIATED`` - the association is open for data transfer.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from dlms_cosem import enumerations as enums
from dlms_cosem.protocol import xdlms

from .apdu import Tag
from .cosem import ASSOCIATION_LN
from .security import PLAIN_TAGS

__all__ = [
    "Action",
    "AssociationState",
    "Event",
    "Outcome",
    "TRANSITIONS",
    "Transition",
    "classify",
]


class AssociationState(enum.Enum):
    """Green Book §9.4.2 server side, collapsed to what a meter needs."""

    # Members are singletons compared by identity; hashing by identity keeps the
    # per-APDU table lookups as cheap as the if-chains they replace.
    __hash__ = object.__hash__

    IDLE = "idle"  # no application association
    AWAITING_HLS = "awaiting-hls"  # AARE sent; only reply_to_HLS_authentication allowed
    ASSOCIATED = "associated"


class Event(enum.Enum):
    """What a request APDU (after the security layer) asks for."""

    # Members are singletons compared by identity; hashing by identity keeps the
    # per-APDU table lookups as cheap as the if-chains they replace.
    __hash__ = object.__hash__

    AARQ = "aarq"  # A-ASSOCIATE request (COSEM-OPEN, §9.4.4)
    RLRQ = "rlrq"  # A-RELEASE request (COSEM-RELEASE, §9.4.5)
    GET = "get-request"  # any Get-Request (normal, next, with-list; §9.3.6)
    HLS_REPLY = "reply-to-hls"  # ACTION Association LN method 1 (HLS pass 3, Blue Book §4.4.3)
    ACTION = "action-request"  # any other well-formed Action-Request
    BAD_ACTION = "bad-action-request"  # an Action-Request that does not parse
    MISPLACED = "misplaced"  # ACSE inside protection, or a ciphered APDU where none may be
    UNKNOWN = "unknown"  # a service this server does not know


class Action(enum.Enum):
    """What the association does for a transition."""

    # Members are singletons compared by identity; hashing by identity keeps the
    # per-APDU table lookups as cheap as the if-chains they replace.
    __hash__ = object.__hash__

    OPEN = "open"  # check the AARQ, answer an AARE (accepted or rejected)
    REJECT_BUSY = "reject-busy"  # AARE rejected-transient: an association is already open
    RELEASE = "release"  # check the RLRQ, answer an RLRE
    GET = "get"  # answer the Get-Request (block transfer included)
    CHECK_HLS = "check-hls"  # verify f(StoC), answer f(CtoS) (HLS passes 3 and 4)
    DENY_ACTION = "deny-action"  # Action-Response read-write-denied
    REFUSE_MALFORMED = "refuse-malformed"  # ExceptionResponse service-not-allowed / other-reason
    NOT_ALLOWED = "not-allowed"  # ExceptionResponse service-not-allowed / operation-not-possible
    NOT_SUPPORTED = "not-supported"  # ExceptionResponse service-unknown / service-not-supported


class Outcome(enum.Enum):
    """How an action ended; the transition maps each outcome to the next state."""

    # Members are singletons compared by identity; hashing by identity keeps the
    # per-APDU table lookups as cheap as the if-chains they replace.
    __hash__ = object.__hash__

    DONE = "done"  # accepted (OPEN: the association is open, no HLS needed)
    NEEDS_HLS = "needs-hls"  # OPEN accepted an HLS-GMAC AARQ: pass 3 must follow
    REFUSED = "refused"  # the request was answered with a refusal


@dataclass(frozen=True, slots=True)
class Transition:
    """One row: the action and the state after each outcome it can have."""

    action: Action
    next: Mapping[Outcome, AssociationState]


_S = AssociationState
_IDLE, _HLS, _ASSOC = _S.IDLE, _S.AWAITING_HLS, _S.ASSOCIATED


def _stay(action: Action, state: AssociationState) -> Transition:
    """An action that never changes the state, whatever its outcome."""
    return Transition(action, {o: state for o in Outcome})


def _release(state: AssociationState) -> Transition:
    # A refused RLRQ (bad BER, a ciphered release that does not decipher) keeps the association.
    return Transition(Action.RELEASE, {Outcome.DONE: _IDLE, Outcome.REFUSED: state})


#: The server association, Green Book §9.4.2 collapsed: (state, event) → transition.
TRANSITIONS: Final[Mapping[tuple[AssociationState, Event], Transition]] = {
    # No association: only an AARQ does anything.
    (_IDLE, Event.AARQ): Transition(
        Action.OPEN, {Outcome.DONE: _ASSOC, Outcome.NEEDS_HLS: _HLS, Outcome.REFUSED: _IDLE}
    ),
    (_IDLE, Event.RLRQ): _stay(Action.NOT_ALLOWED, _IDLE),
    (_IDLE, Event.GET): _stay(Action.NOT_ALLOWED, _IDLE),
    (_IDLE, Event.HLS_REPLY): _stay(Action.NOT_ALLOWED, _IDLE),
    (_IDLE, Event.ACTION): _stay(Action.NOT_ALLOWED, _IDLE),
    (_IDLE, Event.BAD_ACTION): _stay(Action.NOT_ALLOWED, _IDLE),
    (_IDLE, Event.MISPLACED): _stay(Action.NOT_ALLOWED, _IDLE),
    (_IDLE, Event.UNKNOWN): _stay(Action.NOT_ALLOWED, _IDLE),
    # AARE sent with StoC: HLS pass 3 or release; any other ACTION ends the attempt.
    (_HLS, Event.AARQ): _stay(Action.REJECT_BUSY, _HLS),
    (_HLS, Event.RLRQ): _release(_HLS),
    (_HLS, Event.GET): _stay(Action.NOT_ALLOWED, _HLS),
    (_HLS, Event.HLS_REPLY): Transition(Action.CHECK_HLS, {Outcome.DONE: _ASSOC, Outcome.REFUSED: _IDLE}),
    (_HLS, Event.ACTION): Transition(Action.DENY_ACTION, {Outcome.DONE: _IDLE, Outcome.REFUSED: _IDLE}),
    (_HLS, Event.BAD_ACTION): _stay(Action.REFUSE_MALFORMED, _HLS),
    (_HLS, Event.MISPLACED): _stay(Action.NOT_ALLOWED, _HLS),
    (_HLS, Event.UNKNOWN): _stay(Action.NOT_ALLOWED, _HLS),
    # Open for data transfer.
    (_ASSOC, Event.AARQ): _stay(Action.REJECT_BUSY, _ASSOC),
    (_ASSOC, Event.RLRQ): _release(_ASSOC),
    (_ASSOC, Event.GET): _stay(Action.GET, _ASSOC),
    (_ASSOC, Event.HLS_REPLY): _stay(Action.DENY_ACTION, _ASSOC),
    (_ASSOC, Event.ACTION): _stay(Action.DENY_ACTION, _ASSOC),
    (_ASSOC, Event.BAD_ACTION): _stay(Action.REFUSE_MALFORMED, _ASSOC),
    (_ASSOC, Event.MISPLACED): _stay(Action.NOT_ALLOWED, _ASSOC),
    (_ASSOC, Event.UNKNOWN): _stay(Action.NOT_SUPPORTED, _ASSOC),
}


def _is_hls_reply(request: object) -> bool:
    """Is this ``reply_to_HLS_authentication``: IC 15, 0.0.40.0.0.255, method 1?"""
    m = getattr(request, "cosem_method", None)
    return (
        m is not None
        and m.interface == enums.CosemInterface.ASSOCIATION_LN
        and m.instance.to_bytes() == ASSOCIATION_LN
        and m.method == 1
    )


def classify(apdu: bytes, *, protected: bool = False) -> Event:
    """The event a request APDU raises; ``protected`` says it came out of a glo envelope.

    Pure: it parses an Action-Request to tell HLS pass 3 from other methods, and
    nothing else. Never raises."""
    tag = apdu[0] if apdu else -1
    if tag in (Tag.AARQ, Tag.RLRQ):
        # ACSE APDUs travel in clear; inside protection they are not valid.
        if protected:
            return Event.MISPLACED
        return Event.AARQ if tag == Tag.AARQ else Event.RLRQ
    if tag == Tag.GET_REQUEST:
        return Event.GET
    if tag == Tag.ACTION_REQUEST:
        try:
            request = xdlms.ActionRequestFactory.from_bytes(apdu)
        except Exception:  # dlms_cosem raises ValueError/IndexError/KeyError on bad input
            return Event.BAD_ACTION
        return Event.HLS_REPLY if _is_hls_reply(request) else Event.ACTION
    if tag == Tag.GENERAL_GLO_CIPHERING or tag in PLAIN_TAGS:
        return Event.MISPLACED
    return Event.UNKNOWN
