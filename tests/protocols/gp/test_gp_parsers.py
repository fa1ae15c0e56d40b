"""Hypothesis tests of the GlobalPlatform command data parsers (INSTALL, LOAD, DELETE,
GET STATUS, PUT KEY, STORE DATA): builder/parser round trips, and random bytes that must
give an ISOException with a proper status word, never another exception. The last tests
drive random bodies through a live security domain over SCP03."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from meterhub.card import AID, Card
from meterhub.card.gp import ISD_AID, StaticKeys, provision_isd
from meterhub.card.gp.loadfile import LoadFileError, parse_load_file, parse_package
from meterhub.card.gp.sd.content import _parse_dgi
from meterhub.protocols.gp.commands import (
    parse_delete,
    parse_get_status,
    parse_install_for_install,
    parse_install_for_load,
    parse_install_for_personalization,
    parse_put_key,
)
from meterhub.protocols.gp.host import (
    GPClient,
    delete_data,
    dgi_data,
    get_status_data,
    install_for_install_data,
    install_for_load_data,
    install_for_make_selectable_data,
    install_for_personalization_data,
    load_blocks,
    parse_get_status_response,
    put_key_data,
)
from meterhub.protocols.iso7816 import ISOException

aids = st.binary(min_size=5, max_size=16).map(AID)
SWS = {0x6A80, 0x6A86, 0x6A88, 0x6700}


def _only_iso(fn, data: bytes) -> None:
    try:
        fn(data)
    except ISOException as exc:
        assert exc.sw in SWS


@given(aids, st.one_of(st.none(), aids), st.sampled_from([b"", bytes(32)]), st.binary(max_size=300))
def test_install_for_load_round_trip(elf, sd, digest, params) -> None:
    req = parse_install_for_load(install_for_load_data(elf, sd, digest, params))
    assert (req.elf_aid, req.sd_aid, req.lfdb_hash, req.load_params) == (elf, sd, digest, params)


@given(
    aids,
    aids,
    aids,
    st.sampled_from([b"\x00", b"\x00\x00\x00", b"\x80\x40\x00"]),
    st.binary(max_size=200),
)
def test_install_for_install_round_trip(elf, module, app, privs, params) -> None:
    req = parse_install_for_install(install_for_install_data(elf, module, app, privs, params))
    assert (req.elf_aid, req.module_aid, req.app_aid, req.app_params) == (elf, module, app, params)
    assert req.privileges == privs + bytes(3 - len(privs))


@given(aids)
def test_make_selectable_and_personalization_round_trip(app) -> None:
    data = install_for_make_selectable_data(app)
    assert parse_install_for_install(data, make_selectable_only=True).app_aid == app
    assert parse_install_for_personalization(install_for_personalization_data(app)).app_aid == app


@given(aids)
def test_delete_and_get_status_round_trip(aid) -> None:
    assert parse_delete(delete_data(aid)) == aid
    assert parse_get_status(get_status_data(aid)) == aid.raw
    assert parse_get_status(get_status_data()) == b""


@given(st.integers(1, 0x7F), st.sampled_from([16, 24, 32]), st.data())
def test_put_key_round_trip(kvn, n, data) -> None:
    k = [data.draw(st.binary(min_size=n, max_size=n)) for _ in range(3)]
    req = parse_put_key(put_key_data(StaticKeys(kvn, *k), bytes(16)))
    assert req.new_kvn == kvn
    assert [c.key_length for c in req.components] == [n] * 3
    assert all(len(c.cryptogram) % 16 == 0 and len(c.kcv) == 3 for c in req.components)


@given(st.lists(st.tuples(st.integers(0, 0xFFFF), st.binary(max_size=300)), max_size=4))
def test_store_data_dgi_round_trip(items) -> None:
    assert _parse_dgi(dgi_data(items)) == items


@given(st.binary(max_size=2000), st.integers(1, 255))
def test_load_blocks_reassemble(blob, size) -> None:
    blocks = load_blocks(blob, size) if len(blob) <= 256 * size else None
    if blocks is None:
        return
    assert b"".join(b for _, _, b in blocks) == blob
    assert [p2 for _, p2, _ in blocks] == list(range(len(blocks)))
    assert [p1 for p1, _, _ in blocks] == [0x00] * (len(blocks) - 1) + [0x80]


@given(st.binary(max_size=120))
def test_parsers_refuse_garbage_with_status_words(data) -> None:
    for fn in (
        parse_install_for_load,
        parse_install_for_install,
        parse_install_for_personalization,
        parse_delete,
        parse_get_status,
        parse_put_key,
        _parse_dgi,
        lambda d: parse_install_for_install(d, make_selectable_only=True),
    ):
        _only_iso(fn, data)
    try:
        parse_load_file(data)
        parse_package(data)
    except LoadFileError as exc:
        assert exc.sw == 0x6A80


@given(st.binary(max_size=120), st.integers(0, 3))
def test_status_response_parser_total(data, which) -> None:
    # Host side: garbage gives ValueError (the codec's TLVError is one), nothing else.
    p1 = (0x80, 0x40, 0x20, 0x10)[which]
    for tagged in (True, False):
        try:
            parse_get_status_response(data, p1, tagged=tagged)
        except ValueError:
            pass


KEYS = StaticKeys.single(0x30, bytes(range(0x40, 0x50)))


@settings(max_examples=60)
@given(
    st.sampled_from([0xE6, 0xE8, 0xE4, 0xF2, 0xF0, 0xD8, 0xE2, 0xCA]),
    st.integers(0, 255),
    st.integers(0, 255),
    st.binary(max_size=200),
)
def test_live_domain_answers_garbage_with_status_words(ins, p1, p2, body) -> None:
    card = Card()
    provision_isd(card, [KEYS])
    card.power_on()
    cl = GPClient(card.transmit)
    cl.select(ISD_AID)
    cl.open(KEYS, 0x33)
    _, sw = cl.send(ins, p1, p2, body)
    assert sw in {0x9000, 0x6310, 0x6A80, 0x6A86, 0x6A88, 0x6985, 0x6982, 0x6A84}, hex(sw)
    # The session survives any refusal: the next command still verifies.
    assert cl.send(0xCA, 0x00, 0x66)[1] == 0x9000
