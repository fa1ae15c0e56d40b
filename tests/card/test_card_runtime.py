"""The card runtime (meterhub.card): SELECT, channels, firewall, transient and
persistent memory, transactions under power loss, GET RESPONSE, registry.

Expected behaviour comes from ISO/IEC 7816-4:2020 (§5.1 cases, §5.4.1 CLA,
§11.1.2 MANAGE CHANNEL, §11.2.2 SELECT, §11.5.3 GET RESPONSE), the Java Card
3.0.5 Runtime Environment Specification (§4.5.2 applet SELECT, §5 transient
objects, §6.2 firewall, §7 transactions) and GPC 2.3.1 (§5.3 life cycle).
Everything here is computed by the test applets below; no answer is canned.
"""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meterhub.card import (
    AID,
    CLEAR_ON_DESELECT,
    CLEAR_ON_RESET,
    INSTALLED,
    LOCKED,
    PRIV_CARD_RESET,
    PRIV_SECURITY_DOMAIN,
    SELECTABLE,
    Applet,
    AppletContext,
    Card,
    PersistentStore,
    PowerLoss,
    RegistryError,
    SecurityException,
    Shareable,
    TransactionException,
    build_atr,
    ins,
    register_applet_class,
    shareable_interface,
)
from meterhub.protocols.iso7816 import SW, CommandAPDU, ISOException
from meterhub.protocols.iso7816.tlv import parse

COUNTER = AID.from_hex("A0000006170101")
COUNTER2 = AID.from_hex("A0000006170102")
OTHER = AID.from_hex("A0000006170201")
SERVER = AID.from_hex("A0000006179901")
MANAGER = AID.from_hex("A0000006170001")

LEAKS: dict[str, Any] = {}  # where a careless applet "leaks" references to others


def pattern(n: int, seed: int = 7) -> bytes:
    return bytes((seed + 31 * i) % 251 for i in range(n))


class CounterApplet(Applet):
    """A test applet: counters, transactions, transient memory, firewall probes."""

    def __init__(self, ctx: AppletContext) -> None:
        super().__init__(ctx)
        self.t_deselect = ctx.make_transient_bytes(4, CLEAR_ON_DESELECT)
        self.t_reset = ctx.make_transient_bytes(4, CLEAR_ON_RESET)
        LEAKS[f"store:{ctx.aid}"] = ctx.store
        LEAKS[f"transient:{ctx.aid}"] = self.t_reset
        LEAKS[f"ctx:{ctx.aid}"] = ctx

    @classmethod
    def install(cls, ctx: AppletContext, params: bytes) -> Applet:
        if params == b"fail":
            ctx.store.put(b"junk", b"1")
            raise ISOException(SW.WRONG_DATA)
        ctx.store.put_int(b"count", int.from_bytes(params or b"\x00", "big"))
        return cls(ctx)

    def select(self) -> bool:
        return self.ctx.store.get(b"refuse") is None

    @ins(0x10)
    def increment(self, apdu: CommandAPDU) -> bytes:
        n = self.ctx.store.get_int(b"count") + 1
        self.ctx.store.put_int(b"count", n)
        return n.to_bytes(4, "big")

    @ins(0x12)
    def read(self, apdu: CommandAPDU) -> bytes:
        return self.ctx.store.get_int(b"count").to_bytes(4, "big")

    @ins(0x20)
    def multi_write(self, apdu: CommandAPDU) -> None:
        """Increment a, b and c inside one transaction (JCRE §7.3)."""
        self.ctx.begin_transaction()
        for key in (b"a", b"b", b"c"):
            self.ctx.store.put_int(key, self.ctx.store.get_int(key) + 1)
        self.ctx.commit_transaction()

    @ins(0x21)
    def read_abc(self, apdu: CommandAPDU) -> bytes:
        return bytes(self.ctx.store.get_int(k) for k in (b"a", b"b", b"c"))

    @ins(0x22)
    def leave_open(self, apdu: CommandAPDU) -> None:
        self.ctx.begin_transaction()
        self.ctx.store.put_int(b"count", 1000)
        if apdu.p1 == 1:
            raise ISOException(SW.CONDITIONS_NOT_SATISFIED)

    @ins(0x24)
    def abort(self, apdu: CommandAPDU) -> bytes:
        self.ctx.begin_transaction()
        self.ctx.store.put_int(b"count", 555)
        inside = self.ctx.store.get_int(b"count")
        self.ctx.abort_transaction()
        return bytes((inside == 555, self.ctx.store.get_int(b"count") != 555))

    @ins(0x26)
    def nested(self, apdu: CommandAPDU) -> None:
        self.ctx.begin_transaction()
        self.ctx.begin_transaction()  # TransactionException(IN_PROGRESS) -> 6F00

    @ins(0x30)
    def echo(self, apdu: CommandAPDU) -> bytes:
        return apdu.data

    @ins(0x32)
    def long_answer(self, apdu: CommandAPDU) -> bytes:
        return pattern((apdu.p1 << 8) | apdu.p2)

    @ins(0x34)
    def bump_and_answer(self, apdu: CommandAPDU) -> bytes:
        self.increment(apdu)
        return pattern(20, self.ctx.store.get_int(b"count"))

    @ins(0x40)
    def write_transients(self, apdu: CommandAPDU) -> None:
        self.t_deselect[0:4] = apdu.data[:4]
        self.t_reset[0:4] = apdu.data[:4]

    @ins(0x42)
    def read_transients(self, apdu: CommandAPDU) -> bytes:
        return bytes(self.t_deselect) + bytes(self.t_reset)

    @ins(0x50)
    def peek_other_store(self, apdu: CommandAPDU) -> bytes:
        other = LEAKS[f"store:{AID(apdu.data)}"]
        return other.get(b"count") or b""

    @ins(0x51)
    def poke_other_transient(self, apdu: CommandAPDU) -> None:
        LEAKS[f"transient:{AID(apdu.data)}"][0] = 1

    @ins(0x52)
    def begin_in_other_context(self, apdu: CommandAPDU) -> None:
        LEAKS[f"ctx:{AID(apdu.data)}"].begin_transaction()

    @ins(0x53)
    def use_registry(self, apdu: CommandAPDU) -> bytes:
        return bytes((len(self.ctx.registry),))

    @ins(0x56)
    def use_server(self, apdu: CommandAPDU) -> bytes:
        """P1 = 0: call bump(); 1: call a non-interface method; 2: hand the
        server our own store (the server touching it must fail)."""
        sio = self.ctx.get_shareable(SERVER, apdu.p2)
        if sio is None:
            raise ISOException(SW.CONDITIONS_NOT_SATISFIED)
        if apdu.p1 == 1:
            return sio.secret()
        if apdu.p1 == 2:
            return sio.read_from(self.ctx.store)
        return sio.bump().to_bytes(4, "big")

    @ins(0x72, cla=0x80)
    def proprietary_only(self, apdu: CommandAPDU) -> bytes:
        return b"\x80"

    @ins(0x7E)
    def crash(self, apdu: CommandAPDU) -> None:
        raise RuntimeError("bug in an applet")

    @ins(0x7F)
    def refuse_next_select(self, apdu: CommandAPDU) -> None:
        self.ctx.store.put(b"refuse", b"1")


@shareable_interface
class BumpInterface(Shareable):
    """The interface a client may call (its methods are declarations only)."""

    def bump(self) -> int: ...

    def read_from(self, store: Any) -> bytes: ...


class BumpService(BumpInterface):
    def __init__(self, applet: ServerApplet) -> None:
        self.applet = applet

    def bump(self) -> int:
        store = self.applet.ctx.store  # runs in the server's context: allowed
        n = store.get_int(b"bumps") + 1
        store.put_int(b"bumps", n)
        return n

    def read_from(self, store: Any) -> bytes:
        return store.get(b"count") or b""

    def secret(self) -> bytes:  # public, but not part of the interface
        return b"secret"


class ServerApplet(Applet):
    """Grants BumpInterface only to the client AIDs listed in its install params."""

    @classmethod
    def install(cls, ctx: AppletContext, params: bytes) -> Applet:
        ctx.store.put(b"allowed", params)
        return cls(ctx)

    def get_shareable_interface(self, client_aid: AID, parameter: int) -> Shareable | None:
        allowed = self.ctx.store.get(b"allowed") or b""
        if parameter != 0x01:
            return None
        for i in range(0, len(allowed), 7):
            if allowed[i : i + 7] == client_aid.raw:
                return BumpService(self)
        return None

    @ins(0x10)
    def read_bumps(self, apdu: CommandAPDU) -> bytes:
        return self.ctx.store.get_int(b"bumps").to_bytes(4, "big")


class BadServerApplet(Applet):
    def get_shareable_interface(self, client_aid: AID, parameter: int) -> Any:
        return object()  # not Shareable


class ManagerApplet(Applet):
    """Stands in for a security domain: may read the registry."""

    @ins(0x53)
    def count(self, apdu: CommandAPDU) -> bytes:
        return bytes((len(self.ctx.registry),))


register_applet_class("test.counter", CounterApplet)
register_applet_class("test.server", ServerApplet)
register_applet_class("test.badserver", BadServerApplet)
register_applet_class("test.manager", ManagerApplet)


# --- helpers ----------------------------------------------------------------------
def select_apdu(aid: bytes, p2: int = 0x00, cla: int = 0x00, le: int | None = 256) -> bytes:
    return CommandAPDU(cla, 0xA4, 0x04, p2, aid, le).to_bytes()


def cmd(ins_: int, p1: int = 0, p2: int = 0, data: bytes = b"", le: int | None = 256, cla: int = 0) -> bytes:
    return CommandAPDU(cla, ins_, p1, p2, data, le).to_bytes()


def sw(resp: bytes) -> int:
    return int.from_bytes(resp[-2:], "big")


def make_card(path: Path | None = None) -> Card:
    card = Card(path)
    card.registry.install_applet(CounterApplet, COUNTER, package_aid="A00000061701")
    card.registry.install_applet("test.counter", COUNTER2, params=b"\x05")
    card.registry.install_applet(CounterApplet, OTHER)
    card.registry.install_applet(ServerApplet, SERVER, params=COUNTER.raw)
    card.power_on()
    return card


@pytest.fixture
def card() -> Card:
    return make_card()


# --- ATR and power ------------------------------------------------------------------
def parse_atr(atr: bytes) -> dict[str, Any]:
    """Independent ISO/IEC 7816-3 §8.2 ATR walk."""
    assert atr[0] == 0x3B  # direct convention
    t0 = atr[1]
    k = t0 & 0x0F
    y = t0 >> 4
    i = 2
    protocols = []
    while True:
        for bit in (0x1, 0x2, 0x4):  # TA, TB, TC
            if y & bit:
                i += 1
        if not y & 0x8:
            break
        td = atr[i]
        i += 1
        protocols.append(td & 0x0F)
        y = td >> 4
    hist = atr[i : i + k]
    i += k
    tck_present = any(p != 0 for p in protocols)
    if tck_present:
        x = 0
        for b in atr[1 : i + 1]:
            x ^= b
        assert x == 0, "TCK check failed"
        i += 1
    assert i == len(atr), "trailing bytes after the ATR"
    return {"protocols": protocols, "historical": hist}


def test_atr_is_valid_t1() -> None:
    card = Card()
    atr = card.power_on()
    info = parse_atr(atr)
    assert info["protocols"][0] == 1 and set(info["protocols"]) == {1}
    assert info["historical"] == bytes.fromhex("8073C0005B")
    assert len(atr) <= 33
    custom = build_atr(b"\x80\x01\x02")
    assert parse_atr(custom)["historical"] == b"\x80\x01\x02"
    with pytest.raises(ValueError):
        build_atr(bytes(16))


def test_transmit_when_off_and_after_power_off(card: Card) -> None:
    card.power_off()
    assert card.transmit(select_apdu(COUNTER.raw)) == b"\x6f\x00"
    assert card.reset() == card.atr
    assert sw(card.transmit(select_apdu(COUNTER.raw))) == SW.NO_ERROR


# --- malformed input at the card --------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("", SW.WRONG_LENGTH),
        ("00", SW.WRONG_LENGTH),
        ("00A404", SW.WRONG_LENGTH),
        ("00A4040002AA", SW.WRONG_LENGTH),
        ("FFA40400", SW.CLA_NOT_SUPPORTED),
        ("00650000", SW.INS_NOT_SUPPORTED),
        ("00A4041000", SW.INCORRECT_P1P2),  # P2 b5-b8 set
        ("00A4040300", SW.INCORRECT_P1P2),  # "previous occurrence": unsupported
        ("00A4040400", SW.INCORRECT_P1P2),  # FCP: unsupported for applets
        ("00A4040008A0000006179999FF00", SW.FILE_NOT_FOUND),
        ("00CA000000", SW.APPLET_SELECT_FAILED),  # nothing selected yet
        ("00C0000000", SW.CONDITIONS_NOT_SATISFIED),  # GET RESPONSE with nothing pending
        ("40CA000000", SW.LOGICAL_CHANNEL_NOT_SUPPORTED),  # channel 4 (further interindustry)
        ("04CA000000", SW.APPLET_SELECT_FAILED),  # SM bits, channel 0, nothing selected
        ("01CA000000", SW.LOGICAL_CHANNEL_NOT_SUPPORTED),  # channel 1 not open
    ],
)
def test_malformed_at_the_card(card: Card, raw: str, expected: int) -> None:
    assert card.transmit(bytes.fromhex(raw)) == expected.to_bytes(2, "big")


def test_applet_errors_become_status_words(card: Card) -> None:
    assert sw(card.transmit(select_apdu(COUNTER.raw))) == SW.NO_ERROR
    assert sw(card.transmit(cmd(0x7E))) == SW.UNKNOWN  # RuntimeError -> 6F00
    assert sw(card.transmit(cmd(0x44))) == SW.INS_NOT_SUPPORTED
    assert sw(card.transmit(cmd(0x72))) == SW.CLA_NOT_SUPPORTED  # handler wants CLA 8x
    assert card.transmit(cmd(0x72, cla=0x80, le=1)) == b"\x80\x90\x00"
    r = card.transmit_apdu(CommandAPDU(0x80, 0x72, 0, 0, le=1))
    assert (r.data, r.sw) == (b"\x80", SW.NO_ERROR)
    assert sw(card.transmit(cmd(0x26))) == SW.UNKNOWN  # nested transaction
    assert not card.store.in_transaction


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=300))
def test_random_bytes_always_get_a_status_word(card: Card, raw: bytes) -> None:
    card.transmit(select_apdu(COUNTER.raw))
    resp = card.transmit(raw)
    assert len(resp) >= 2
    assert card.powered and not card.store.in_transaction


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    ins_=st.integers(0, 0xFF).filter(lambda i: (i & 0xF0) not in (0x60, 0x90)),
    p1=st.integers(0, 0xFF),
    p2=st.integers(0, 0xFF),
    data=st.binary(max_size=40),
    cla=st.sampled_from([0x00, 0x01, 0x80, 0x84, 0x0C]),
)
def test_random_wellformed_commands(card: Card, ins_: int, p1: int, p2: int, data: bytes, cla: int) -> None:
    card.transmit(select_apdu(COUNTER.raw))
    if ins_ in (0x7F, 0x32):  # would refuse later selects / ask for 64 KiB
        return
    resp = card.transmit(CommandAPDU(cla, ins_, p1, p2, data, 256).to_bytes())
    assert len(resp) >= 2


# --- SELECT ---------------------------------------------------------------------------
def test_select_full_match_returns_fci(card: Card) -> None:
    resp = card.transmit(select_apdu(COUNTER.raw))
    assert sw(resp) == SW.NO_ERROR
    (fci,) = parse(resp[:-2])
    assert fci.tag == 0x6F
    assert fci.find(0x84).value == COUNTER.raw  # type: ignore[union-attr]
    assert fci.find(0xA5) is not None
    assert card.selected(0) == COUNTER
    # P2 = 0C: no response data (ISO/IEC 7816-4 §11.2.2)
    assert card.transmit(select_apdu(COUNTER2.raw, p2=0x0C, le=None)) == b"\x90\x00"
    assert card.selected(0) == COUNTER2


def test_select_without_le_answers_61xx_then_get_response(card: Card) -> None:
    resp = card.transmit(select_apdu(COUNTER.raw, le=None))
    assert resp[0] == 0x61
    n = resp[1]
    fci = card.transmit(cmd(0xC0, le=n))
    assert sw(fci) == SW.NO_ERROR and len(fci) == n + 2
    assert parse(fci[:-2])[0].tag == 0x6F


def test_select_partial_first_and_next(card: Card) -> None:
    prefix = bytes.fromhex("A000000617")
    order = []
    resp = card.transmit(select_apdu(prefix, p2=0x00))
    while sw(resp) == SW.NO_ERROR:
        order.append(card.selected(0))
        resp = card.transmit(select_apdu(prefix, p2=0x02))
    assert sw(resp) == SW.FILE_NOT_FOUND
    assert order == [COUNTER, COUNTER2, OTHER, SERVER]  # installation order
    # an exact match wins over an earlier partial one
    card.transmit(select_apdu(COUNTER2.raw))
    assert card.selected(0) == COUNTER2
    # a longer prefix narrows the choice
    card.transmit(select_apdu(bytes.fromhex("A00000061702")))
    assert card.selected(0) == OTHER


def test_select_unknown_keeps_current_and_answers_6a82(card: Card) -> None:
    card.transmit(select_apdu(COUNTER.raw))
    assert sw(card.transmit(select_apdu(bytes.fromhex("A0000009999999")))) == SW.FILE_NOT_FOUND
    assert card.selected(0) == COUNTER  # JCRE §4.5.2: forwarded, still active


def test_life_cycle_blocks_selection(card: Card) -> None:
    card.registry.set_state(COUNTER2, SELECTABLE | LOCKED)
    assert sw(card.transmit(select_apdu(COUNTER2.raw))) == SW.FILE_NOT_FOUND
    card.registry.set_state(COUNTER2, INSTALLED)
    assert sw(card.transmit(select_apdu(COUNTER2.raw))) == SW.FILE_NOT_FOUND
    card.registry.set_state(COUNTER2, 0x1F)  # an application-specific state
    assert sw(card.transmit(select_apdu(COUNTER2.raw))) == SW.NO_ERROR
    # partial selection skips the locked one
    card.registry.set_state(COUNTER, SELECTABLE | LOCKED)
    card.transmit(select_apdu(OTHER.raw))
    card.transmit(select_apdu(bytes.fromhex("A000000617"), p2=0x00))
    assert card.selected(0) == COUNTER2


def test_select_refused_by_applet_is_6999(card: Card) -> None:
    card.transmit(select_apdu(COUNTER.raw))
    card.transmit(cmd(0x7F, le=None))
    card.transmit(select_apdu(OTHER.raw))
    assert sw(card.transmit(select_apdu(COUNTER.raw))) == SW.APPLET_SELECT_FAILED
    assert card.selected(0) is None
    assert sw(card.transmit(cmd(0x12))) == SW.APPLET_SELECT_FAILED


def test_select_guard_warning_and_refusal(card: Card) -> None:
    card.select_guard = lambda rec: 0x6283 if rec.aid == COUNTER else 0x6A81
    resp = card.transmit(select_apdu(COUNTER.raw))
    assert sw(resp) == 0x6283 and parse(resp[:-2])[0].tag == 0x6F
    assert sw(card.transmit(select_apdu(OTHER.raw))) == 0x6A81


def test_default_applet_selected_after_reset() -> None:
    card = make_card()
    assert card.selected(0) is None
    card.registry.install_applet(ManagerApplet, MANAGER, privileges=bytes((PRIV_SECURITY_DOMAIN | PRIV_CARD_RESET,)))
    card.reset()
    assert card.selected(0) == MANAGER
    assert card.transmit(cmd(0x53, le=1)) == bytes((5,)) + b"\x90\x00"
    # SELECT with no data selects the default applet too
    card.transmit(select_apdu(COUNTER.raw))
    card.transmit(select_apdu(b"", le=256))
    assert card.selected(0) == MANAGER


# --- logical channels -----------------------------------------------------------------------
def test_manage_channel_open_select_close(card: Card) -> None:
    assert card.transmit(cmd(0x70, 0x00, 0x00, le=1)) == b"\x01\x90\x00"
    assert card.open_channels == [0, 1]
    assert sw(card.transmit(select_apdu(COUNTER.raw, cla=0x01))) == SW.NO_ERROR
    assert card.selected(1) == COUNTER
    # the same non-multiselectable applet cannot be active twice (JCRE §4.5.2)
    assert sw(card.transmit(select_apdu(COUNTER.raw, cla=0x00))) == SW.CONDITIONS_NOT_SATISFIED
    assert sw(card.transmit(select_apdu(OTHER.raw, cla=0x00))) == SW.NO_ERROR
    assert card.transmit(cmd(0x10, cla=0x01, le=4))[-2:] == b"\x90\x00"
    # the interface device picks channel 3, then the card assigns 2
    assert card.transmit(cmd(0x70, 0x00, 0x03, le=None)) == b"\x90\x00"
    assert card.transmit(cmd(0x70, 0x00, 0x00, le=1)) == b"\x02\x90\x00"
    assert sw(card.transmit(cmd(0x70, 0x00, 0x00, le=1))) == SW.LOGICAL_CHANNEL_NOT_SUPPORTED
    assert sw(card.transmit(cmd(0x70, 0x00, 0x03, le=None))) == SW.INCORRECT_P1P2  # already open
    # close channel 1 from itself (P2 = 00), then it answers 6881
    assert card.transmit(cmd(0x70, 0x80, 0x00, cla=0x01, le=None)) == b"\x90\x00"
    assert card.selected(1) is None and 1 not in card.open_channels
    assert sw(card.transmit(cmd(0x12, cla=0x01))) == SW.LOGICAL_CHANNEL_NOT_SUPPORTED
    assert sw(card.transmit(cmd(0x70, 0x80, 0x00, le=None))) == SW.INCORRECT_P1P2  # basic channel
    assert sw(card.transmit(cmd(0x70, 0x40, 0x00, le=None))) == SW.INCORRECT_P1P2
    # SELECT on a closed channel opens it (JCRE §4.5.2 step 3)
    assert sw(card.transmit(select_apdu(COUNTER.raw, cla=0x01))) == SW.NO_ERROR
    assert card.selected(1) == COUNTER


# --- firewall ---------------------------------------------------------------------------------
def test_firewall_denies_foreign_objects(card: Card) -> None:
    card.transmit(select_apdu(OTHER.raw))
    assert sw(card.transmit(cmd(0x50, data=COUNTER.raw))) == SW.SECURITY_STATUS_NOT_SATISFIED
    assert sw(card.transmit(cmd(0x51, data=COUNTER.raw, le=None))) == SW.SECURITY_STATUS_NOT_SATISFIED
    assert sw(card.transmit(cmd(0x52, data=COUNTER.raw, le=None))) == SW.SECURITY_STATUS_NOT_SATISFIED
    assert not card.store.in_transaction
    # its own objects are fine
    assert sw(card.transmit(cmd(0x50, data=OTHER.raw))) == SW.NO_ERROR
    # only security domains reach the registry
    assert sw(card.transmit(cmd(0x53))) == SW.SECURITY_STATUS_NOT_SATISFIED


def test_firewall_direct_calls() -> None:
    card = make_card()
    rec_a, rec_b = card.registry.get(COUNTER), card.registry.get(OTHER)
    assert rec_a is not None and rec_b is not None
    with card.runtime.enter(rec_b.context), pytest.raises(SecurityException):
        rec_a.context.store.get(b"count")
    with card.runtime.enter(rec_b.context), pytest.raises(SecurityException):
        rec_a.context.make_transient_bytes(1)
    with card.runtime.enter(rec_b.context), pytest.raises(SecurityException):
        _ = rec_b.context.registry
    with card.runtime.enter(rec_a.context):
        assert rec_a.context.store.get_int(b"count") == 0


def test_shareable_interface_granted_by_aid(card: Card) -> None:
    card.transmit(select_apdu(COUNTER.raw))
    assert card.transmit(cmd(0x56, 0, 0x01, le=4)) == (1).to_bytes(4, "big") + b"\x90\x00"
    assert card.transmit(cmd(0x56, 0, 0x01, le=4)) == (2).to_bytes(4, "big") + b"\x90\x00"
    # wrong parameter: refused (None) -> the client answers 6985
    assert sw(card.transmit(cmd(0x56, 0, 0x02))) == SW.CONDITIONS_NOT_SATISFIED
    # a method outside the interface is not reachable
    assert sw(card.transmit(cmd(0x56, 1, 0x01))) == SW.SECURITY_STATUS_NOT_SATISFIED
    # the server, in its own context, cannot use the client's store
    assert sw(card.transmit(cmd(0x56, 2, 0x01))) == SW.SECURITY_STATUS_NOT_SATISFIED
    # the bumps live in the server's store
    card.transmit(select_apdu(SERVER.raw))
    assert card.transmit(cmd(0x10, le=4)) == (2).to_bytes(4, "big") + b"\x90\x00"


def test_shareable_interface_denied_to_other_aid(card: Card) -> None:
    card.transmit(select_apdu(OTHER.raw))
    assert sw(card.transmit(cmd(0x56, 0, 0x01))) == SW.CONDITIONS_NOT_SATISFIED
    card.transmit(select_apdu(SERVER.raw))
    assert card.transmit(cmd(0x10, le=4)) == bytes(4) + b"\x90\x00"


def test_non_shareable_and_missing_server() -> None:
    card = make_card()
    bad = AID.from_hex("A0000006179902")
    card.registry.install_applet("test.badserver", bad)
    rec = card.registry.get(COUNTER)
    assert rec is not None
    with card.runtime.enter(rec.context):
        with pytest.raises(SecurityException):
            rec.context.get_shareable(bad, 1)
        assert rec.context.get_shareable("A0000006179903", 1) is None


# --- transient memory ----------------------------------------------------------------------
def test_transient_cleared_on_deselect_and_reset(card: Card) -> None:
    card.transmit(select_apdu(COUNTER.raw))
    card.transmit(cmd(0x40, data=b"\x01\x02\x03\x04", le=None))
    assert card.transmit(cmd(0x42, le=8)) == b"\x01\x02\x03\x04" * 2 + b"\x90\x00"
    card.transmit(select_apdu(OTHER.raw))
    card.transmit(select_apdu(COUNTER.raw))
    # CLEAR_ON_DESELECT zeroed; CLEAR_ON_RESET kept
    assert card.transmit(cmd(0x42, le=8)) == bytes(4) + b"\x01\x02\x03\x04" + b"\x90\x00"
    card.transmit(cmd(0x40, data=b"\x05\x06\x07\x08", le=None))
    card.reset()
    card.transmit(select_apdu(COUNTER.raw))
    assert card.transmit(cmd(0x42, le=8)) == bytes(8) + b"\x90\x00"


def test_transient_array_is_fixed_size() -> None:
    card = make_card()
    rec = card.registry.get(COUNTER)
    assert rec is not None
    arr = rec.context.make_transient_bytes(3)
    with pytest.raises(ValueError):
        arr[0:3] = b"\x01"
    with pytest.raises(ValueError):
        rec.context.make_transient_bytes(3, 9)


# --- persistence, registry ------------------------------------------------------------------
def test_persistence_across_restart(tmp_path: Path) -> None:
    path = tmp_path / "card.db"
    card = make_card(path)
    card.transmit(select_apdu(COUNTER.raw))
    for _ in range(3):
        card.transmit(cmd(0x10, le=4))
    card.registry.set_state(OTHER, SELECTABLE | LOCKED)
    card.close()
    card2 = Card(path)
    card2.power_on()
    assert [r.aid for r in card2.registry] == [COUNTER, COUNTER2, OTHER, SERVER]
    assert card2.registry.get(COUNTER).package_aid == AID.from_hex("A00000061701")  # type: ignore[union-attr]
    assert card2.registry.get(OTHER).locked  # type: ignore[union-attr]
    card2.transmit(select_apdu(COUNTER.raw))
    assert card2.transmit(cmd(0x12, le=4)) == (3).to_bytes(4, "big") + b"\x90\x00"
    card2.transmit(select_apdu(COUNTER2.raw))
    assert card2.transmit(cmd(0x12, le=4)) == (5).to_bytes(4, "big") + b"\x90\x00"
    assert sw(card2.transmit(select_apdu(OTHER.raw))) == SW.FILE_NOT_FOUND
    conn_mode = card2.store._db().execute("PRAGMA journal_mode").fetchone()[0]
    assert conn_mode == "wal"
    card2.close()


def test_registry_management(card: Card) -> None:
    with pytest.raises(RegistryError) as ei:
        card.registry.install_applet(CounterApplet, COUNTER)
    assert ei.value.sw == SW.WRONG_DATA
    with pytest.raises(RegistryError) as ei:
        card.registry.install_applet("no.such.class", "A0000006177777")
    assert ei.value.sw == SW.WRONG_DATA
    with pytest.raises(RegistryError) as ei:
        card.registry.install_applet(CounterApplet, b"\xa0\x00")
    assert ei.value.sw == SW.WRONG_DATA
    with pytest.raises(RegistryError) as ei:
        card.registry.delete("A0000006177777")
    assert ei.value.sw == SW.REFERENCED_DATA_NOT_FOUND
    card.transmit(select_apdu(COUNTER2.raw))
    with pytest.raises(RegistryError) as ei:
        card.registry.delete(COUNTER2)
    assert ei.value.sw == SW.CONDITIONS_NOT_SATISFIED
    card.transmit(select_apdu(COUNTER.raw))
    card.registry.delete(COUNTER2)
    assert COUNTER2 not in card.registry
    assert card.store.keys(COUNTER2.raw) == []
    assert sw(card.transmit(select_apdu(COUNTER2.raw))) == SW.FILE_NOT_FOUND
    # a failing install leaves nothing behind
    bad = AID.from_hex("A0000006170103")
    with pytest.raises(ISOException):
        card.registry.install_applet(CounterApplet, bad, params=b"fail")
    assert bad not in card.registry and card.store.keys(bad.raw) == []
    # associations and privileges
    card.registry.install_applet(CounterApplet, bad, sd_aid=SERVER, privileges=b"\x00\x00\x00")
    assert [r.aid for r in card.registry.associated(SERVER)] == [bad]
    card.registry.set_privileges(bad, b"\x80\x00\x00")
    assert card.registry.get(bad).privileges == b"\x80\x00\x00"  # type: ignore[union-attr]


# --- transactions -----------------------------------------------------------------------------
def test_open_transaction_aborted_after_process(card: Card) -> None:
    card.transmit(select_apdu(COUNTER.raw))
    card.transmit(cmd(0x10, le=4))
    assert card.transmit(cmd(0x22, le=None)) == b"\x90\x00"
    assert not card.store.in_transaction
    assert card.transmit(cmd(0x12, le=4)) == (1).to_bytes(4, "big") + b"\x90\x00"
    assert sw(card.transmit(cmd(0x22, p1=1, le=None))) == SW.CONDITIONS_NOT_SATISFIED
    assert card.transmit(cmd(0x12, le=4)) == (1).to_bytes(4, "big") + b"\x90\x00"
    assert card.transmit(cmd(0x24, le=2)) == b"\x01\x01\x90\x00"
    assert card.transmit(cmd(0x20, le=None)) == b"\x90\x00"
    assert card.transmit(cmd(0x21, le=3)) == b"\x01\x01\x01\x90\x00"


def test_store_transaction_api(tmp_path: Path) -> None:
    store = PersistentStore(tmp_path / "s.db")
    with pytest.raises(TransactionException):
        store.commit()
    with pytest.raises(TransactionException):
        store.abort()
    store.begin()
    store.put(b"n", b"k", b"v")
    store.delete(b"n", b"gone")
    assert store.get(b"n", b"k") == b"v" and store.keys(b"n") == [b"k"]
    with pytest.raises(TransactionException):
        store.begin()
    store.commit()
    store.begin()
    store.delete(b"n", b"k")
    assert store.get(b"n", b"k") is None and store.keys(b"n") == []
    store.abort()
    assert store.get(b"n", b"k") == b"v"
    store.close()
    assert PersistentStore(tmp_path / "s.db").get(b"n", b"k") == b"v"


class _Tear:
    def __init__(self, at: int) -> None:
        self.at, self.calls, self.fired = at, 0, False

    def __call__(self, what: str, n: int) -> None:
        self.calls += 1
        if self.calls == self.at:
            self.fired = True
            raise PowerLoss(what)


def _read_abc(path: Path) -> tuple[int, int, int]:
    """Read a, b, c as the runtime would after a restart."""
    store = PersistentStore(path)
    try:
        vals = tuple(
            int.from_bytes(store.get(COUNTER.raw, k) or b"\x00", "big", signed=True)
            for k in (b"a", b"b", b"c")
        )
    finally:
        store.close()
    return vals  # type: ignore[return-value]


def test_power_loss_at_every_write_of_a_transaction(tmp_path: Path) -> None:
    """JCRE §7.6: after a tear the state is all-before or all-after."""
    path = tmp_path / "card.db"
    card = make_card(path)
    card.transmit(select_apdu(COUNTER.raw))
    assert card.transmit(cmd(0x20, le=None)) == b"\x90\x00"  # a = b = c = 1
    # count the write points of one transaction
    counter = _Tear(at=-1)
    card.store.fault_hook = counter
    card.transmit(cmd(0x20, le=None))  # 2
    card.store.fault_hook = None
    card.close()
    total = counter.calls
    assert total >= 8  # 3 journal writes, 3 row writes, pre- and post-commit
    outcomes = set()
    expected = 2
    for at in range(1, total + 1):
        card = Card(path)
        card.power_on()
        card.transmit(select_apdu(COUNTER.raw))
        tear = _Tear(at)
        card.store.fault_hook = tear
        with pytest.raises(PowerLoss):
            card.transmit(cmd(0x20, le=None))
        assert tear.fired and not card.powered
        state = _read_abc(path)  # a fresh process would see this file
        assert state in ((expected,) * 3, (expected + 1,) * 3), (at, state)
        outcomes.add(state == (expected + 1,) * 3)
        expected = state[0]
        # the torn card must be rebuilt
        with pytest.raises(PowerLoss):
            card.power_on()
    assert outcomes == {False, True}  # both sides of the commit point were hit


def test_power_loss_on_single_write(tmp_path: Path) -> None:
    """Outside a transaction one update is atomic on its own (JCRE §7.2)."""
    path = tmp_path / "card.db"
    card = make_card(path)
    card.transmit(select_apdu(COUNTER.raw))
    card.transmit(cmd(0x10, le=4))
    seen = set()
    for at in (1, 2, 3):
        card = Card(path)
        card.power_on()
        card.transmit(select_apdu(COUNTER.raw))
        before = int.from_bytes(card.transmit(cmd(0x12, le=4))[:4], "big")
        card.store.fault_hook = _Tear(at)
        with pytest.raises(PowerLoss):
            card.transmit(cmd(0x10, le=4))
        card = Card(path)
        card.power_on()
        card.transmit(select_apdu(COUNTER.raw))
        after = int.from_bytes(card.transmit(cmd(0x12, le=4))[:4], "big")
        assert after in (before, before + 1)
        seen.add(after - before)
        card.close()
    assert seen == {0, 1}


def _child_tear(path: str, at: int) -> None:  # runs in a forked process
    card = Card(path)
    card.power_on()
    card.transmit(select_apdu(COUNTER.raw))
    calls = 0

    def hook(what: str, n: int) -> None:
        nonlocal calls
        calls += 1
        if calls == at:
            os._exit(3)  # the process dies mid-write: no cleanup, no close

    card.store.fault_hook = hook
    card.transmit(cmd(0x20, le=None))
    os._exit(0)


def test_process_killed_at_every_write(tmp_path: Path) -> None:
    """Same as above, but the writer process is killed outright, so SQLite's
    own recovery of the WAL file is what keeps the transaction atomic."""
    path = tmp_path / "card.db"
    card = make_card(path)
    card.close()
    ctx = multiprocessing.get_context("fork")
    expected = 0
    outcomes = set()
    for at in range(1, 9):
        proc = ctx.Process(target=_child_tear, args=(str(path), at))
        proc.start()
        proc.join(20)
        assert proc.exitcode == 3
        state = _read_abc(path)
        assert state in ((expected,) * 3, (expected + 1,) * 3), (at, state)
        outcomes.add(state[0] == expected + 1)
        expected = state[0]
    assert outcomes == {False, True}


def test_torn_install_is_all_or_nothing(tmp_path: Path) -> None:
    """A tear anywhere in INSTALL leaves the applet fully installed or absent."""
    probe = Card(tmp_path / "probe.db")
    counter = _Tear(at=-1)
    probe.store.fault_hook = counter
    probe.registry.install_applet(CounterApplet, COUNTER, params=b"\x07")
    probe.close()
    assert counter.calls >= 6  # object: row, pre, post; record: row, pre, post
    outcomes = set()
    for at in range(1, counter.calls + 1):
        path = tmp_path / f"card{at}.db"
        card = Card(path)
        card.store.fault_hook = _Tear(at)
        with pytest.raises(PowerLoss):
            card.registry.install_applet(CounterApplet, COUNTER, params=b"\x07")
        card2 = Card(path)  # the restart
        installed = COUNTER in card2.registry
        outcomes.add(installed)
        if installed:
            card2.power_on()
            card2.transmit(select_apdu(COUNTER.raw))
            assert card2.transmit(cmd(0x12, le=4)) == (7).to_bytes(4, "big") + b"\x90\x00"
        else:
            assert card2.store.namespaces() == []  # no orphaned objects
        card2.close()
    assert outcomes == {False, True}


# --- response length handling --------------------------------------------------------------
def test_get_response_chaining_600_bytes(card: Card) -> None:
    card.transmit(select_apdu(COUNTER.raw))
    resp = card.transmit(cmd(0x32, 0x02, 0x58, le=256))  # ask for 600 bytes
    assert len(resp) == 258 and resp[-2:] == b"\x61\x00"  # 344 left: at least 256
    got = resp[:-2]
    resp = card.transmit(cmd(0xC0, le=256))
    assert len(resp) == 258 and resp[-2:] == b"\x61\x58"  # 88 left
    got += resp[:-2]
    resp = card.transmit(cmd(0xC0, le=0x58))
    assert resp[-2:] == b"\x90\x00"
    got += resp[:-2]
    assert got == pattern(600)
    assert sw(card.transmit(cmd(0xC0))) == SW.CONDITIONS_NOT_SATISFIED  # nothing left
    # extended Le gets everything at once
    resp = card.transmit(CommandAPDU(0, 0x32, 0x02, 0x58, b"", 65536).to_bytes())
    assert resp == pattern(600) + b"\x90\x00"


def test_get_response_other_command_discards(card: Card) -> None:
    card.transmit(select_apdu(COUNTER.raw))
    assert card.transmit(cmd(0x32, 0x01, 0x2C, le=256))[-2:] == b"\x61\x2c"
    assert sw(card.transmit(cmd(0xC0, p1=1))) == SW.INCORRECT_P1P2
    resp = card.transmit(cmd(0xC0, le=0x10))  # a smaller Le than available
    assert resp[-2:] == b"\x61\x1c" and resp[:-2] == pattern(300)[256:272]
    card.transmit(cmd(0x12, le=4))
    assert sw(card.transmit(cmd(0xC0))) == SW.CONDITIONS_NOT_SATISFIED


def test_wrong_le_gets_6cxx_and_no_double_execution(card: Card) -> None:
    card.transmit(select_apdu(COUNTER.raw))
    assert card.transmit(cmd(0x34, le=0x10)) == b"\x6c\x14"
    resp = card.transmit(cmd(0x34, le=0x14))
    assert resp == pattern(20, 1) + b"\x90\x00"  # the counter moved once
    assert card.transmit(cmd(0x12, le=4)) == (1).to_bytes(4, "big") + b"\x90\x00"
    # a case-4 command with a short Le is chunked instead
    resp = card.transmit(cmd(0x30, data=pattern(20), le=0x10))
    assert resp == pattern(20)[:16] + b"\x61\x04"
    assert card.transmit(cmd(0xC0, le=4)) == pattern(20)[16:] + b"\x90\x00"


def test_aid_type() -> None:
    a = AID.from_hex("A0 00 00 01 51 00 00 00")
    assert a.rid == bytes.fromhex("A000000151") and a.pix == b"\x00\x00\x00"
    assert a.partial_equals(bytes.fromhex("A00000")) and not a.partial_equals(b"\xa1")
    assert AID.of(a) is a and AID.of(bytes(a)) == a and str(a) == "A000000151000000"
    for bad in (b"\xa0\x00\x00\x00", bytes(17)):
        with pytest.raises(ValueError):
            AID(bad)


# --- model-based check of the store ---------------------------------------------------------
_keys = st.sampled_from([b"a", b"b", b"c"])
_nss = st.sampled_from([b"", COUNTER.raw])


@settings(max_examples=60, deadline=None)
@given(
    ops=st.lists(
        st.one_of(
            st.tuples(st.just("put"), _nss, _keys, st.binary(max_size=8)),
            st.tuples(st.just("delete"), _nss, _keys),
            st.tuples(st.just("begin")),
            st.tuples(st.just("commit")),
            st.tuples(st.just("abort")),
            st.tuples(st.just("restart")),
            st.tuples(st.just("drop_ns"), _nss),
        ),
        max_size=30,
    )
)
def test_store_matches_a_dict_model(tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[Any, ...]]) -> None:
    """Committed state = dict; the journal = a dict overlay; a restart drops it."""
    path = tmp_path_factory.mktemp("model") / "s.db"
    store = PersistentStore(path)
    committed: dict[tuple[bytes, bytes], bytes] = {}
    journal: dict[tuple[bytes, bytes], bytes | None] | None = None
    try:
        for op in ops:
            kind = op[0]
            if kind == "put":
                target = committed if journal is None else journal
                target[(op[1], op[2])] = op[3]
                store.put(op[1], op[2], op[3])
            elif kind == "delete":
                if journal is None:
                    committed.pop((op[1], op[2]), None)
                else:
                    journal[(op[1], op[2])] = None
                store.delete(op[1], op[2])
            elif kind == "drop_ns":
                view = dict(committed)
                if journal is not None:
                    for k, v in journal.items():
                        if v is None:
                            view.pop(k, None)
                        else:
                            view[k] = v
                for k in [k for k in view if k[0] == op[1]]:
                    if journal is None:
                        committed.pop(k, None)
                    else:
                        journal[k] = None
                store.delete_namespace(op[1])
            elif kind == "begin":
                if journal is not None:
                    with pytest.raises(TransactionException):
                        store.begin()
                else:
                    journal = {}
                    store.begin()
            elif kind in ("commit", "abort"):
                if journal is None:
                    with pytest.raises(TransactionException):
                        getattr(store, kind)()
                    continue
                if kind == "commit":
                    for k, v in journal.items():
                        if v is None:
                            committed.pop(k, None)
                        else:
                            committed[k] = v
                journal = None
                getattr(store, kind)()
            else:  # restart: RAM (the journal) is lost
                store.close()
                store = PersistentStore(path)
                journal = None
            view = dict(committed)
            for k, v in (journal or {}).items():
                if v is None:
                    view.pop(k, None)
                else:
                    view[k] = v
            for ns in (b"", COUNTER.raw):
                assert store.keys(ns) == sorted(k for (n, k) in view if n == ns)
                for key in (b"a", b"b", b"c"):
                    assert store.get(ns, key) == view.get((ns, key))
    finally:
        store.close()


class MultiApplet(CounterApplet):
    multiselectable = True


register_applet_class("test.multi", MultiApplet)


def test_manage_channel_inherits_applets() -> None:
    """JCRE §4.4.1: from channel 0 the default applet, from channel n its applet."""
    card = make_card()
    multi = AID.from_hex("A0000006170301")
    card.registry.install_applet(MultiApplet, multi, privileges=bytes((PRIV_CARD_RESET,)))
    card.reset()
    assert card.selected(0) == multi
    assert card.transmit(cmd(0x70, 0, 0, le=1)) == b"\x01\x90\x00"
    assert card.selected(1) == multi  # multiselectable: active on both
    assert card.transmit(cmd(0x10, cla=0x01, le=4)) == (1).to_bytes(4, "big") + b"\x90\x00"
    card.transmit(select_apdu(COUNTER.raw, cla=0x01))
    assert card.transmit(cmd(0x70, 0, 0, cla=0x01, le=1)) == b"\x02\x90\x00"
    assert card.selected(2) is None  # COUNTER is not multiselectable and active on 1
    card.transmit(cmd(0x70, 0x80, 0x01, le=None))
    assert card.transmit(cmd(0x70, 0, 0x03, cla=0x02, le=None)) == b"\x90\x00"
    assert card.selected(3) is None
    card.transmit(select_apdu(COUNTER.raw, cla=0x02))
    card.transmit(cmd(0x70, 0x80, 0x03, le=None))
    card.transmit(cmd(0x70, 0, 0x01, cla=0x02, le=None))
    assert card.selected(1) is None  # COUNTER active on 2 already
    card.transmit(select_apdu(multi.raw, cla=0x02))
    card.transmit(cmd(0x70, 0, 0x03, cla=0x02, le=None))
    assert card.selected(3) == multi
