"""One test per rule of docs/verification.md (the normative Verification section).

Each test is named after its rule (test_rule_V07_...), and checks the rule's
reject reason and, where the rule is about the command line, its exit code.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from datetime import date, timedelta
from pathlib import Path

import pytest

from helpers import make_history
from meterhub.cli import main
from meterhub.crypto import ecdsa
from meterhub.crypto.group import Q
from meterhub.hub.billing import bill_statement
from meterhub.meter.device import DailyBatch, SignedBatch, chain_genesis, chain_head
from meterhub.model.display import format_amount, shown
from meterhub.model.errors import FormatError
from meterhub.model.formats.statements import BillStatement
from meterhub.model.formats.units import encode_records
from meterhub.model.formats.upload import DayUpload
from meterhub.model.timebase import day_starts
from meterhub.tariffs import (
    TariffError,
    dump_tariff,
    example_signed_tariff,
    example_tariff,
    sign_tariff,
    verify_tariff,
)
from meterhub.utility.forecasting import verify_samples, verify_scores
from meterhub.utility.settlement import expected_code_hash, verify_settlement
from meterhub.utility.store import UtilityStore
from meterhub.utility.verifier import DayCommitments, verify_bill
from test_forecasting import scored  # noqa: F401 - fixtures shared with those modules
from test_sampling import tossed  # noqa: F401
from test_settlement import settled  # noqa: F401

START = date(2027, 6, 1)
SETTLEMENT_CODE = expected_code_hash("meterhub.applets.settlement/1")
PROFILING_CODE = expected_code_hash("meterhub.applets.profiling/1")


# ----------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Three simulated days of meter m1, the example tariff, and statements for
    06-01..06-02 (st12), 06-03 (st3) and 06-02..06-03 (st23), made by the CLI."""
    d = tmp_path_factory.mktemp("rules")
    assert main(["meter", "simulate", "--meter-id", "m1", "--days", "3", "--start", str(START), "--out", str(d / "meter")]) == 0
    assert main(["meter", "simulate", "--meter-id", "m2", "--days", "3", "--start", str(START), "--out", str(d / "meter2")]) == 0
    assert main(["tariff", "example", "--out", str(d / "t.json"), "--key-out", str(d / "sup.pub")]) == 0
    m = d / "meter"
    common = ["--meter", str(m / "m1.meter.json"), "--tariff", str(d / "t.json"), "--supplier-key", str(d / "sup.pub")]
    for name, pf, pt in [("st12", "2027-06-01", "2027-06-02"), ("st3", "2027-06-03", "2027-06-03"), ("st23", "2027-06-02", "2027-06-03")]:
        assert main(["hub", "bill", *common, "--key", str(m / "m1.homelink.key"), "--homelink", str(m / "m1.homelink.jsonl"),
                     "--from", pf, "--to", pt, "--out", str(d / f"{name}.json"), "--data-dir", str(d / "hub")]) == 0
    return d


class Cli:
    """`utility verify` against a fresh data dir, with any input swapped out."""

    def __init__(self, files: Path, tmp: Path) -> None:
        self.d, self.tmp = files, tmp
        self.util = tmp / "util"

    def verify(self, *, statement="st12.json", uploads=None, tariff=None, meter=None) -> int:
        d = self.d
        return main([
            "utility", "verify",
            "--meter", str(meter or d / "meter" / "m1.meter.json"),
            "--tariff", str(tariff or d / "t.json"), "--supplier-key", str(d / "sup.pub"),
            "--uploads", str(uploads or d / "meter" / "m1.uploads.jsonl"),
            "--statement", str(statement if isinstance(statement, Path) else d / statement),
            "--data-dir", str(self.util),
        ])

    def write(self, name: str, text: str) -> Path:
        p = self.tmp / name
        p.write_text(text)
        return p

    def statement(self, name="st12.json", **changes) -> Path:
        o = json.loads((self.d / name).read_text())
        o.update(changes)
        return self.write("changed.json", json.dumps(o))

    def upload_lines(self) -> list[str]:
        return (self.d / "meter" / "m1.uploads.jsonl").read_text().splitlines()


@pytest.fixture()
def cli(files, tmp_path):
    return Cli(files, tmp_path)


def _one_line(capsys) -> str:
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert len(lines) == 1, out
    return lines[0]


def _store(tmp_path, h, *, signed=None) -> UtilityStore:
    u = UtilityStore(tmp_path / "u.sqlite")
    signed = signed or example_signed_tariff()
    u.add_tariff(signed, dump_tariff(signed))
    u.register_meter(h.meter.meter_id, ecdsa.public_bytes(h.meter.signing_key), "Europe/Berlin", 15, tariff=signed)
    return u


def _resigned(h, batch: DailyBatch) -> SignedBatch:
    """A batch the meter itself signed (as a meter with a forked or rolled-back chain would)."""
    return SignedBatch(batch, ecdsa.sign(h.meter.signing_key, batch.signed_message()))


def _forked_day(h, k: int) -> tuple[SignedBatch, bytes]:
    """Day ``k`` re-chained from a head that is not day k-1's, with a valid meter signature."""
    d = h.days[k]
    b = d.batch.batch
    prev = hashlib.sha256(b"another branch").digest()
    forked = dataclasses.replace(b, prev_head=prev, head=chain_head(prev, b.first_index, d.commitments))
    return _resigned(h, forked), d.commitments


# ------------------------------------------------------------------- rules
def test_rule_V01_output_is_one_escaped_line_with_exit_codes(cli, capsys):
    assert cli.verify() == 0
    assert _one_line(capsys).startswith("VERIFIED m1 2027-06-01..2027-06-02: ")
    assert cli.verify(statement=cli.statement(currency="EUR\nVERIFIED m1 2027-06-01..2027-06-02: 0.01 EUR")) == 1
    line = _one_line(capsys)
    assert line.startswith("REJECTED m1 2027-06-01..2027-06-02: statement currency 'EUR\\nVERIFIED")
    assert cli.verify(statement=cli.tmp / "missing.json") == 2
    assert "cannot read" in capsys.readouterr().err
    assert shown("ok text") == "ok text" and shown("a\x1b[2Jb") == "'a\\x1b[2Jb'" and shown("\u202e") == "'\\u202e'"


def test_rule_V02_meter_registration_is_a_usage_input(cli, capsys):
    bad = cli.write("bad.meter.json", '{"format": "meterhub/meter-registration/v1", "meter_id": "m1"}')
    assert cli.verify(meter=bad) == 2
    assert "bad meter registration" in capsys.readouterr().err
    assert cli.verify() == 0
    reg = json.loads((cli.d / "meter" / "m1.meter.json").read_text())
    reg["tz"] = "Europe/London"
    assert cli.verify(meter=cli.write("tz.meter.json", json.dumps(reg))) == 2
    assert "already registered with time base Europe/Berlin" in capsys.readouterr().err


def test_rule_V03_strict_json_everywhere(cli, capsys):
    text = (cli.d / "st12.json").read_text().rstrip()
    assert cli.verify(statement=cli.write("dup.json", text[:-1] + ',"total":999}')) == 1
    assert "duplicate key 'total'" in _one_line(capsys)
    assert cli.verify(statement=cli.write("deep.json", "[" * 100_000 + "]" * 100_000)) == 1
    assert "levels deep" in _one_line(capsys)
    lines = cli.upload_lines()
    assert cli.verify(uploads=cli.write("nan.jsonl", '{"batch": NaN}\n' + "\n".join(lines))) == 1
    assert "NaN is not allowed" in _one_line(capsys)


def test_rule_V04_field_encodings(history):
    d = history.statement.to_dict()
    for field, value, reason in [
        ("blinding", d["blinding"].upper(), "lower-case hex"),
        ("tariff_digest", " " + d["tariff_digest"][1:], "lower-case hex"),
        ("tariff_digest", d["tariff_digest"][:-2], "32 bytes"),
        ("period_from", "20270327", "YYYY-MM-DD"),
        ("count", -1, "non-negative"),
        ("count", True, "non-negative"),
        ("count", 1.0, "non-negative"),
        ("tariff_version", 1 << 64, "out of range"),
    ]:
        o = dict(d, **{field: value})
        with pytest.raises(FormatError, match=reason):
            BillStatement.from_dict(o)
    with pytest.raises(FormatError, match="missing"):
        BillStatement.from_dict({k: v for k, v in d.items() if k != "total"})


def test_rule_V05_high_s_signatures_are_refused(history, tmp_path):
    for _ in range(8):  # signers only ever emit the low half
        assert ecdsa.is_low_s(ecdsa.sign(history.meter.signing_key, b"m"))
    d = history.day_commitments()[0]
    sig = d.batch.signature
    high = sig[:32] + (ecdsa.N - int.from_bytes(sig[32:], "big")).to_bytes(32, "big")
    # The high-S twin is a mathematically valid ECDSA signature ...
    msg = d.batch.batch.signed_message()
    assert ecdsa.verify(history.registration.public_key, msg, high)
    assert not ecdsa.verify(history.registration.public_key, msg, high, low_s=True)
    assert ecdsa.verify(history.registration.public_key, msg, sig, low_s=True)
    assert not SignedBatch(d.batch.batch, high).verify(history.registration.public_key)
    # ... but is refused by the verifier, ingest and the tariff check.
    days = history.day_commitments()
    days[0] = dataclasses.replace(d, batch=SignedBatch(d.batch.batch, high))
    assert "high-S" in verify_bill(history.statement, history.registration, days, history.tariff).reason
    u = _store(tmp_path, history)
    res = u.ingest_day(DayUpload(SignedBatch(d.batch.batch, high), history.uploads()[0].records))
    assert not res.accepted and "high-S" in res.reason
    signed = example_signed_tariff()
    s = signed.signature
    twin = dataclasses.replace(signed, signature=s[:32] + (ecdsa.N - int.from_bytes(s[32:], "big")).to_bytes(32, "big"))
    from meterhub.tariffs import demo_supplier_key

    with pytest.raises(TariffError, match="high-S"):
        verify_tariff(twin, demo_supplier_key().public_key())


def test_rule_V06_forged_tariff_is_rejected_with_exit_1(cli, capsys):
    raw = json.loads((cli.d / "t.json").read_text())
    raw["tariff"]["standing_charge_per_day"] += 1  # content changed, signature kept
    assert cli.verify(tariff=cli.write("forged.json", json.dumps(raw))) == 1
    assert _one_line(capsys).startswith("REJECTED tariff")
    other = sign_tariff(example_tariff(), ecdsa.generate_signing_key())
    assert cli.verify(tariff=cli.write("other.json", dump_tariff(other).decode())) == 1
    assert "not by the given supplier key" in _one_line(capsys)


def test_rule_V07_hash_input_length_prefixes():
    dst = b"meterhub/v1/commitment-chain/genesis"
    mid = "m\u00e9ter-7"
    want = hashlib.sha256(bytes([len(dst)]) + dst + len(mid.encode()).to_bytes(2, "big") + mid.encode()).digest()
    assert chain_genesis(mid) == want
    step = b"meterhub/v1/commitment-chain/step"
    prev, c = bytes(range(32)), bytes([2]) + bytes(32)
    assert chain_head(prev, 5, c) == hashlib.sha256(bytes([len(step)]) + step + prev + (5).to_bytes(8, "big") + c).digest()


def test_rule_V08_the_uploads_file_is_one_meters_contiguous_chain(cli, files, capsys):
    lines = cli.upload_lines()
    other = (files / "meter2" / "m2.uploads.jsonl").read_text().splitlines()
    for name, text, reason in [
        ("swapped", [lines[1], lines[0], lines[2]], "does not follow"),
        ("deleted", [lines[0], lines[2]], "does not follow"),
        ("foreign", [lines[0], other[1]], "from meter 'm2'"),
    ]:
        assert cli.verify(uploads=cli.write(f"{name}.jsonl", "\n".join(text))) == 1, name
        assert reason in _one_line(capsys), name
    # A verbatim repeated line is idempotent.
    assert cli.verify(uploads=cli.write("rep.jsonl", "\n".join([lines[0], lines[0], *lines[1:]]))) == 0
    capsys.readouterr()


def test_rule_V09_redelivery_must_equal_the_stored_day(cli, capsys):
    assert cli.verify() == 0  # stores the genuine days in the (persistent) data dir
    capsys.readouterr()
    lines = cli.upload_lines()
    o = json.loads(lines[1])
    for field, pos in [("records", 200), ("signature", 10), ("batch", 30)]:
        bad = dict(o)
        bad[field] = bad[field][:pos] + ("1" if bad[field][pos] == "0" else "0") + bad[field][pos + 1 :]
        text = "\n".join([lines[0], json.dumps(bad), lines[2]])
        assert cli.verify(uploads=cli.write("flip.jsonl", text)) == 1, field
        line = _one_line(capsys)
        assert line.startswith("REJECTED"), line
    assert cli.verify() == 0  # the identical re-delivery is idempotent
    capsys.readouterr()


def test_rule_V09_conflict_reason_names_what_differs(tmp_path):
    h = make_history(n_days=2, seed=31)
    u = _store(tmp_path, h)
    up = h.uploads()[0]
    assert u.ingest_day(up).accepted
    c_other = h.days[0].commitments[:33] + h.days[0].commitments[:33] + h.days[0].commitments[66:]
    res = u.ingest_day(DayUpload(up.batch, encode_records(0, c_other)))
    assert not res.accepted and res.reason == "day 2027-03-27: conflicts with the stored upload (records differ)"
    assert u.ingest_day(up).duplicate


def test_rule_V10_uploads_may_start_after_the_meters_first_day(tmp_path):
    h = make_history(n_days=3, seed=32)
    u = _store(tmp_path, h)
    ups = h.uploads()
    assert u.ingest_day(ups[1]).accepted and u.ingest_day(ups[2]).accepted
    first = h.days[1].first_index
    prices = h.prices()[first:]
    st = bill_statement(meter_id="m-test", tariff=h.tariff, period_from=h.start + timedelta(days=1),
                        period_to=h.start + timedelta(days=2), first_index=first, prices=prices,
                        openings=[o for d in h.days[1:] for o in d.openings])
    assert u.verify_statement(st).ok
    # A day stored before its successor must lead into it; day 0 does.
    assert u.ingest_day(ups[0]).accepted
    # A first day at index 0 must start from the genesis head.
    h2 = make_history(n_days=1, seed=33)
    u2 = _store(tmp_path / "b", h2)
    fake, c = _forked_day(h2, 0)
    res = u2.ingest_day(DayUpload(fake, encode_records(0, c)))
    assert not res.accepted and "does not start the meter's chain" in res.reason


def test_rule_V11_every_line_must_verify_even_outside_the_period(cli, capsys):
    lines = cli.upload_lines()
    o = json.loads(lines[2])  # 06-03, outside the statement's 06-01..06-02
    o["signature"] = ("1" if o["signature"][0] == "0" else "0") + o["signature"][1:]
    assert cli.verify(uploads=cli.write("late.jsonl", "\n".join([lines[0], lines[1], json.dumps(o)]))) == 1
    assert "2027-06-03" in _one_line(capsys)


@pytest.mark.parametrize(
    "changes,reason",
    [
        ({"subunits_per_unit": 1}, "subunits_per_unit 1 is not the tariff's 1000000"),
        ({"subunits_per_unit": 0}, "subunits_per_unit 0 is not the tariff's 1000000"),
        ({"currency": "USD"}, "currency 'USD' is not the tariff's 'EUR'"),
        ({"meter_id": "m2"}, "statement is for meter 'm2', not 'm1'"),
        ({"tariff_id": "other"}, "statement uses tariff 'other'"),
    ],
)
def test_rule_V12_statement_terms_are_the_signed_tariffs(cli, capsys, changes, reason):
    assert cli.verify(statement=cli.statement(**changes)) == 1
    line = _one_line(capsys)
    assert line.startswith("REJECTED") and reason in line, line


def test_rule_V13_tariff_valid_on_the_whole_period(history):
    st_ = dataclasses.replace(history.statement, period_from=history.tariff.valid_from - timedelta(days=1))
    v = verify_bill(st_, history.registration, history.day_commitments(), history.tariff)
    assert not v.ok and "not yet valid" in v.reason


def test_rule_V14_days_chain_to_each_other(history):
    # Day 1 re-chained from another head and signed by the meter itself: every check
    # of its own passes; only the link to day 0's head catches it.
    forked, c = _forked_day(history, 1)
    days = history.day_commitments()
    days[1] = dataclasses.replace(days[1], batch=forked, c33=c)
    v = verify_bill(history.statement, history.registration, days, history.tariff)
    assert v.reason == "day 2027-03-28: batch does not chain to the previous day's head"
    b = history.days[1].batch.batch
    shifted = dataclasses.replace(b, first_index=b.first_index + 1, head=chain_head(b.prev_head, b.first_index + 1, history.days[1].commitments))
    days = history.day_commitments()
    days[1] = DayCommitments(_resigned(history, shifted), history.days[1].commitments)
    v = verify_bill(history.statement, history.registration, days, history.tariff)
    assert "starts at interval" in v.reason


def test_rule_V14_each_batch_signs_the_local_days_interval_count():
    # A meter that signed 95 intervals for a 96-interval day: signature, indices and
    # chain are all consistent, and the statement covers exactly what was signed.
    h = make_history(start=date(2027, 6, 1), n_days=1, seed=35)
    b, c = h.days[0].batch.batch, h.days[0].commitments[:-33]
    short = dataclasses.replace(b, count=95, head=chain_head(b.prev_head, 0, c))
    days = [DayCommitments(_resigned(h, short), c, list(range(95)))]
    st_ = dataclasses.replace(h.statement, count=95)
    v = verify_bill(st_, h.registration, days, h.tariff)
    assert v.reason == "day 2027-06-01: batch signs 95 intervals, the local day has 96"


def test_rule_V15_statement_covers_exactly_the_signed_intervals(history):
    for change in ({"first_index": 1}, {"count": history.statement.count - 1}):
        v = verify_bill(dataclasses.replace(history.statement, **change), history.registration, history.day_commitments(), history.tariff)
        assert "statement covers intervals" in v.reason


def test_rule_V16_standing_charge_and_total(history):
    st_ = history.statement
    v = verify_bill(dataclasses.replace(st_, standing_charge=0, total=st_.energy_charge), history.registration, history.day_commitments(), history.tariff)
    assert "standing charge" in v.reason
    v = verify_bill(dataclasses.replace(st_, total=st_.total + 1), history.registration, history.day_commitments(), history.tariff)
    assert v.reason == "total is not energy charge plus standing charge"


def test_rule_V17_figures_are_range_checked_before_the_group_equation(history):
    st_ = history.statement
    big = dataclasses.replace(st_, energy_charge=st_.energy_charge + Q, total=st_.total + Q)
    v = verify_bill(big, history.registration, history.day_commitments(), history.tariff)
    assert "out of range" in v.reason
    bound = 0xFFFFFFFF * sum(history.prices())
    over = dataclasses.replace(st_, energy_charge=bound + 1, total=bound + 1 + st_.standing_charge)
    v = verify_bill(over, history.registration, history.day_commitments(), history.tariff)
    assert v.reason == f"energy charge {bound + 1} out of range (at most {bound} for this period)"


def test_rule_V18_finer_meter_interval_takes_the_tariff_slot_price():
    t = example_tariff()
    day = date(2027, 6, 2)
    five = t.day_prices(day, "Europe/Berlin", 5)
    quarter = t.day_prices(day, "Europe/Berlin", 15)
    assert len(five) == 288 and all(five[k] == quarter[k // 3] for k in range(288))
    # An interval that is neither a divisor nor a multiple of the tariff's is refused.
    with pytest.raises(TariffError, match="does not fit the tariff's 15-minute grid"):
        t.prices_for(day_starts(day, "Europe/Berlin", 60), 7)


def test_rule_V19_group_equation(history):
    st_ = history.statement
    v = verify_bill(dataclasses.replace(st_, blinding=(st_.blinding + 1) % Q), history.registration, history.day_commitments(), history.tariff)
    assert v.reason.startswith("sum t_i*C_i != bill*G + R*H")


def test_rule_V20_displayed_amounts_round_half_up_to_cents():
    assert format_amount(97_705_810, 1_000_000, "EUR") == "97.71 EUR"
    assert format_amount(5_000, 1_000_000, "EUR") == "0.01 EUR"  # 0.005 -> 0.01
    assert format_amount(4_999, 1_000_000, "EUR") == "0.00 EUR"
    assert format_amount(10**30 + 5, 10, "EUR") == "100000000000000000000000000000.50 EUR"  # exact, no float
    assert format_amount(1, 1, "EU\nR") == "1.00 'EU\\nR'"


def test_rule_V21_verdict_history_and_overlaps(cli, capsys):
    assert cli.verify() == 0
    forged = cli.statement(energy_charge=1, total=1 + json.loads((cli.d / "st12.json").read_text())["standing_charge"])
    assert cli.verify(statement=forged) == 1
    assert cli.verify(statement="st23.json") == 1  # overlaps the verified 06-01..06-02
    assert "overlaps verified bill 2027-06-01..2027-06-02" in capsys.readouterr().out.splitlines()[-1]
    assert cli.verify(statement="st3.json") == 0  # adjoining, not overlapping
    assert cli.verify() == 0  # the identical statement again: verified again
    capsys.readouterr()
    assert main(["utility", "bills", "--data-dir", str(cli.util)]) == 1  # a rejection is on record
    out = capsys.readouterr().out.splitlines()
    first = [ln for ln in out if "2027-06-01..2027-06-02" in ln]
    assert first[0].endswith("verified") and "REJECTED" in first[1] and first[2].endswith("verified")


def test_rule_V22_coverage_lists_unbilled_days(cli, capsys):
    assert cli.verify(statement="st3.json") == 0
    capsys.readouterr()
    assert main(["utility", "coverage", "--data-dir", str(cli.util)]) == 0
    out = capsys.readouterr().out
    assert "uploaded: 2027-06-01..2027-06-03" in out
    assert "billed:   2027-06-03" in out and "unbilled: 2027-06-01..2027-06-02" in out
    assert main(["utility", "bills", "--data-dir", str(cli.util)]) == 0
    assert "unbilled: 2027-06-01..2027-06-02" in capsys.readouterr().out
    assert main(["utility", "coverage", "--meter", "nope", "--data-dir", str(cli.util)]) == 2


def test_rule_V23_settlement_statement(settled):  # noqa: F811 - the imported fixture
    h, _, idx, st = settled
    ok = verify_settlement(st, h.registration, h.day_commitments(), idx.series, code_hash=SETTLEMENT_CODE)
    assert ok.ok, ok.reason
    v = verify_settlement(st, h.registration, h.day_commitments(), idx.series, applet_aid="F04D480050520101")
    assert v.reason.startswith(f"statement names applet '{st.applet_aid}', not the F04D480050520101")
    # V - Q*k, E + Q: the same points, refused by range before any equation.
    for change, reason in [
        ({"value": st.value + Q}, f"value {st.value + Q} out of range"),
        ({"value": st.value - Q}, f"value {st.value - Q} out of range"),
        ({"energy_wh": st.energy_wh + Q}, f"energy {st.energy_wh + Q} out of range"),
        ({"index_id": "x\nVERIFIED"}, "statement uses index 'x\\nVERIFIED'"),
    ]:
        v = verify_settlement(dataclasses.replace(st, **change), h.registration, h.day_commitments(), idx.series)
        assert not v.ok and reason in v.reason, v.reason


def test_rule_V24_profile_scores(scored):  # noqa: F811 - the imported fixture
    h, _, profiles, sc = scored
    assert verify_scores(sc, h.registration, h.day_commitments(), profiles, code_hash=PROFILING_CODE).ok
    v = verify_scores(sc, h.registration, h.day_commitments(), profiles, applet_aid="F04D480053540101")
    assert "names applet" in v.reason
    e0 = sc.scores[0]
    for bad in (
        dataclasses.replace(sc, scores=(dataclasses.replace(e0, score=e0.score + Q),) + sc.scores[1:]),
        dataclasses.replace(sc, squares=sc.energy_wh**2 + 1),
        dataclasses.replace(sc, energy_wh=sc.energy_wh + Q),
    ):
        v = verify_scores(bad, h.registration, h.day_commitments(), profiles)
        assert not v.ok and "out of range" in v.reason, v.reason


def test_rule_V25_sample_release(tossed):  # noqa: F811 - the imported fixture
    h, _, coin, rel = tossed
    assert verify_samples(rel, h.registration, h.day_commitments(), **coin, applet_aid=rel.applet_aid).ok
    assert rel.applet_aid == "F04D480050520101"
    v = verify_samples(rel, h.registration, h.day_commitments(), **coin, applet_aid="F04D480053540101")
    assert "release names applet" in v.reason
    s0 = rel.samples[0]
    bad = dataclasses.replace(rel, samples=(dataclasses.replace(s0, m=s0.m + Q),) + rel.samples[1:])
    v = verify_samples(bad, h.registration, h.day_commitments(), **coin)
    assert not v.ok and "out of range" in v.reason
    v = verify_samples(dataclasses.replace(rel, k=rel.k + 1), h.registration, h.day_commitments(), **coin)
    assert "another coin toss" in v.reason


def test_rule_V09_forged_redeliveries_with_the_default_data_dir(files, tmp_path, monkeypatch, capsys):
    """The issue's scenario: genuine days stored under ./meterhub-data, then forged files."""
    monkeypatch.chdir(tmp_path)
    d = files
    base = ["utility", "verify", "--meter", str(d / "meter" / "m1.meter.json"), "--tariff", str(d / "t.json"),
            "--supplier-key", str(d / "sup.pub"), "--statement", str(d / "st12.json")]
    lines = (d / "meter" / "m1.uploads.jsonl").read_text().splitlines()
    assert main([*base, "--uploads", str(d / "meter" / "m1.uploads.jsonl")]) == 0
    assert (tmp_path / "meterhub-data" / "utility.sqlite").exists()
    other = (d / "meter2" / "m2.uploads.jsonl").read_text().splitlines()

    def flip(line: str, field: str, pos: int) -> str:
        o = json.loads(line)
        o[field] = o[field][:pos] + ("1" if o[field][pos] == "0" else "0") + o[field][pos + 1 :]
        return json.dumps(o)

    forged = {
        "commitment byte": [lines[0], flip(lines[1], "records", 41 * 2 * 7 + 30), lines[2]],
        "signature byte": [lines[0], flip(lines[1], "signature", 70), lines[2]],
        "deleted line": [lines[0], lines[2]],
        "swapped lines": [lines[0], lines[2], lines[1]],
        "another meter": other,
    }
    capsys.readouterr()
    for name, text in forged.items():
        (tmp_path / "f.jsonl").write_text("\n".join(text))
        assert main([*base, "--uploads", str(tmp_path / "f.jsonl")]) == 1, name
        out = capsys.readouterr().out
        assert out.startswith("REJECTED") and len(out.strip().splitlines()) == 1, (name, out)


def test_rule_V12_proven_v2_statement_terms_are_the_tariffs():
    from meterhub.hub.proving import prove_bill
    from meterhub.tariffs.nonlinear import KIND_INCLINING_BLOCK, example_nonlinear_tariff
    from meterhub.utility.proof_verifier import verify_proven_bill

    h = make_history(n_days=1, seed=36)
    tariff = example_nonlinear_tariff(KIND_INCLINING_BLOCK)
    st_ = prove_bill(meter_id="m-test", tariff=tariff, period_from=h.start, period_to=h.start, first_index=0,
                     openings=h.openings)
    days = h.day_commitments()
    assert verify_proven_bill(st_, h.registration, days, tariff).ok
    for change, reason in [
        ({"subunits_per_unit": 0}, f"statement subunits_per_unit 0 is not the tariff's {tariff.subunits_per_unit}"),
        ({"currency": "EU\nR"}, "statement currency 'EU\\nR' is not the tariff's"),
    ]:
        v = verify_proven_bill(dataclasses.replace(st_, **change), h.registration, days, tariff)
        assert not v.ok and v.reason.startswith(reason), v.reason
