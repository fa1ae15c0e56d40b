"""One synced commit per APDU (card/store.py): a command's writes, single updates and
committed transactions alike, reach the file in one SQLite transaction; a tear at any
write point of the command leaves the store as before the command or after it."""

from __future__ import annotations

from pathlib import Path

import pytest

from meterhub.card import AID, Applet, Card, PersistentStore, PowerLoss, ins, register_applet_class
from meterhub.protocols.iso7816 import SW, CommandAPDU, ISOException

APP = AID.from_hex("A0000006175501")
KEYS = (b"a", b"b", b"c", b"d", b"e")


class FiveWrites(Applet):
    """INS 30: five single updates, then a transaction over two more keys; INS 31 fails
    with 6985 after three updates (the updates stay, as on a card)."""

    @classmethod
    def install(cls, ctx, params: bytes) -> Applet:  # type: ignore[no-untyped-def]
        return cls(ctx)

    def select(self) -> bool:
        return True

    @ins(0x30)
    def write(self, apdu: CommandAPDU) -> bytes:
        n = self.ctx.store.get_int(b"a") + 1
        for k in KEYS:
            self.ctx.store.put_int(k, n)
        self.ctx.begin_transaction()
        self.ctx.store.put_int(b"x", n)
        self.ctx.store.put_int(b"y", n)
        self.ctx.commit_transaction()
        return bytes([n])

    @ins(0x31)
    def fail_after_writes(self, apdu: CommandAPDU) -> bytes:
        for k in KEYS[:3]:
            self.ctx.store.put_int(k, 100)
        raise ISOException(SW.CONDITIONS_NOT_SATISFIED)

    @ins(0x32)
    def read(self, apdu: CommandAPDU) -> bytes:
        return bytes(self.ctx.store.get_int(k) for k in (*KEYS, b"x", b"y"))


register_applet_class("test.five-writes", FiveWrites)


def _card(path: Path) -> Card:
    card = Card(path)
    if APP not in card.registry:
        card.registry.install_applet(FiveWrites, APP)
    card.power_on()
    assert card.transmit(CommandAPDU(0, 0xA4, 4, 0, APP.raw, 256).to_bytes())[-2:] == b"\x90\x00"
    return card


def _cmd(ins_: int) -> bytes:
    return CommandAPDU(0x80, ins_, 0, 0, b"", 256).to_bytes()


def _state(path: Path) -> bytes:
    card = _card(path)
    try:
        return card.transmit(_cmd(0x32))[:-2]
    finally:
        card.close()


def _commits(card: Card, apdu: bytes) -> tuple[int, bytes]:
    kinds: list[str] = []
    card.store.fault_hook = lambda what, n: kinds.append(what)
    out = card.transmit(apdu)
    card.store.fault_hook = None
    return kinds.count("pre-commit"), out


def test_one_commit_per_apdu(tmp_path: Path) -> None:
    card = _card(tmp_path / "card.db")
    n, out = _commits(card, _cmd(0x30))
    assert out == b"\x01\x90\x00"
    assert n == 1  # seven writes, one transaction among them: one synced commit
    # A refused command keeps its writes (JCRE: an exception does not undo updates).
    n, out = _commits(card, _cmd(0x31))
    assert out == b"\x69\x85" and n == 1
    assert card.transmit(_cmd(0x32))[:-2] == bytes([100, 100, 100, 1, 1, 1, 1])
    card.close()


def test_per_write_baseline_commits_every_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(PersistentStore, "apdu_batching", False)
    card = _card(tmp_path / "card.db")
    n, _ = _commits(card, _cmd(0x30))
    assert n == 6  # five single updates and the transaction
    card.close()


class _Tear:
    def __init__(self, at: int) -> None:
        self.at, self.calls = at, 0

    def __call__(self, what: str, n: int) -> None:
        self.calls += 1
        if self.calls == self.at:
            raise PowerLoss(what)


def test_tear_at_every_write_point_of_an_apdu(tmp_path: Path) -> None:
    path = tmp_path / "card.db"
    card = _card(path)
    card.transmit(_cmd(0x30))  # state 1
    points: list[str] = []
    card.store.fault_hook = lambda what, n: points.append(what)
    card.transmit(_cmd(0x30))  # state 2
    card.close()
    total = len(points)
    assert total >= 10  # 5 rows, 2 journal, 2 rows, pre- and post-commit
    before, outcomes = 2, set()
    for at in range(1, total + 1):
        card = _card(path)
        card.store.fault_hook = _Tear(at)
        with pytest.raises(PowerLoss):
            card.transmit(_cmd(0x30))
        state = _state(path)
        # All seven values from before the command, or all from after it: never a mix.
        assert state in (bytes([before] * 7), bytes([before + 1] * 7)), (at, state)
        outcomes.add(state[0] == before + 1)
        before = state[0]
    assert outcomes == {False, True}
