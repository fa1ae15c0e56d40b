"""meterhub.privacy: releases equal what the applets release, attacks beat the base
rate on raw readings, the evaluation reproduces and its JSON schema."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest

from helpers import make_history
from meterhub.cli import main
from meterhub.crypto.sampling import (
    DEFAULT_K,
    commit_hub_nonce,
    commit_nonce,
    derive_seed,
    new_nonce,
)
from meterhub.hub.secure_element import PROFILING_APP_AID, SETTLEMENT_APP_AID
from meterhub.privacy.attacks import (
    bootstrap_ci,
    f1,
    learn_signatures,
    nilm_co,
    nilm_hart,
    occupancy_supervised,
    occupancy_threshold,
    traits_classifier,
    wilson,
)
from meterhub.privacy.dataset import STRICT_GRID_KINDS
from meterhub.privacy.evaluate import (
    FORMAT,
    NILM_APPLIANCES,
    NILM_ON_WH,
    SOURCES,
    TRAITS,
    build_dataset,
    household_features,
    unit_features,
)
from meterhub.privacy.releases import RECIPIENTS, RELEASE_KINDS, ReleaseContext, household_releases
from meterhub.tariffs.price_index import demo_index_publisher_key, example_price_index, sign_series
from meterhub.tariffs.profiles import reference_profiles
from meterhub.utility.forecasting import ProfileScores, SampleRelease
from meterhub.utility.settlement import SettlementStatement, settlement_request

START = dt.date(2027, 2, 1)


@pytest.fixture(scope="module")
def ds():
    return build_dataset(12, 1, 3, START)


# --------------------------------------------------------------------------- releases


def _day(d: dt.date) -> bytes:
    return d.year.to_bytes(2, "big") + bytes((d.month, d.day))


def test_releases_are_what_the_applets_release(settlement_hub) -> None:
    # The same history through the real applets (card, SCP03, TSMs) and through
    # meterhub.privacy.releases: every released figure is equal.
    h = make_history(start=dt.date(2027, 3, 22), n_days=2, seed=7)
    first, last = h.start, h.start + dt.timedelta(days=1)
    hub = settlement_hub(h)
    index = sign_series(example_price_index(first, 2, seed=2027), demo_index_publisher_key())
    hub.mailbox("supplier", SETTLEMENT_APP_AID).push_series(index)
    profiles = reference_profiles(first, 2)
    mb = hub.mailbox("grid-operator", PROFILING_APP_AID)
    for p in profiles:
        mb.push_series(p)
    nonce = new_nonce()
    c = commit_nonce(h.registration.meter_id, first, last, DEFAULT_K, nonce)
    # The hub answers a commitment to its nonce; the nonce comes with the samples.
    hub_commitment = mb.send(b"\x10" + _day(first) + _day(last) + DEFAULT_K.to_bytes(2, "big") + c, "commit")
    hub.feed()
    st = SettlementStatement.from_json(hub.mailbox("supplier", SETTLEMENT_APP_AID).request(
        settlement_request(first, last, index.series.series_id, 1), "settlement"))
    mb = hub.mailbox("grid-operator", PROFILING_APP_AID)
    ids = ",".join(p.series.series_id for p in profiles).encode()
    sc = ProfileScores.from_json(mb.request(b"\x20" + _day(first) + _day(last) + ids, "scores"))
    rel = SampleRelease.from_json(mb.request(b"\x11" + _day(first) + _day(last) + nonce, "samples"))

    ctx = ReleaseContext(first, 2, period_days=2, seed=0)
    assert commit_hub_nonce(rel.hub_nonce) == hub_commitment
    ctx.coin_seeds[(h.registration.meter_id, first)] = derive_seed(c, nonce, rel.hub_nonce)
    readings = [m for day in h.readings for m in day]
    mine = household_releases(h.registration.meter_id, readings, ctx)
    assert mine["settlement"][0]["E"] == st.energy_wh
    assert mine["settlement"][0]["V"] == st.value
    s = mine["profile-scores"][0]
    assert (s["E"], s["S"], s["n"]) == (sc.energy_wh, sc.squares, sc.count // 4)
    assert s["scores"] == {e.series_id: e.score for e in sc.scores}
    assert mine["samples"][0]["samples"] == [(x.index - rel.first_index, x.m) for x in rel.samples]
    assert mine["bill"][0]["total"] == h.statement.total


def test_every_recipient_has_a_source_and_the_union_has_all() -> None:
    names = {s.name: s for s in SOURCES}
    assert set(RECIPIENTS) <= set(names)
    assert set(names["collusion"].kinds) == set(RELEASE_KINDS)
    for r in RECIPIENTS:
        assert set(names[r].kinds) == {k.name for k in RELEASE_KINDS.values() if k.recipient == r}


def test_strict_sources_are_the_strict_preset() -> None:
    from meterhub.policy.model import STRICT_ENTITLEMENTS

    assert set(STRICT_GRID_KINDS) <= set(STRICT_ENTITLEMENTS["grid-operator"])
    assert "scores" not in STRICT_ENTITLEMENTS["grid-operator"] and "samples" not in STRICT_ENTITLEMENTS["grid-operator"]
    names = {s.name: s for s in SOURCES}
    assert set(names["collusion-strict"].kinds) == set(STRICT_GRID_KINDS) | set(names["supplier"].kinds)


def test_group_aggregate_is_the_group_total(ds) -> None:
    # Every member of a group holds the same hourly totals, the sum of the members' hours.
    figs = [r["aggregate"][0] for r in ds.releases]
    members = figs[0]["members"]
    assert members >= 5
    total = ds.hourly[:members, : len(figs[0]["hourly"])].sum(axis=0)
    assert np.allclose(np.array(figs[0]["hourly"], dtype=float), total)
    assert all(f == figs[0] for f in figs[:members])


def test_dp_release_in_the_evaluation_is_noisy_but_close(ds) -> None:
    errs = []
    for i, r in enumerate(ds.releases):
        f = r["dp-forecast"][0]
        assert f["class"] in f["profiles"] and f["epsilon_milli"] == 1000
        errs.append(f["energy_wh"] - float(np.minimum(ds.hourly[i, : f["hours"]], 5000).sum()))
    assert sum(e != 0 for e in errs) >= len(errs) - 1  # noisy (P(0) = tanh(1/2e4) per draw)
    assert all(abs(e) < 60 * 10000 for e in errs)  # within 60 noise scales (epsilon 1/2, 5 kWh)


def test_seeds_reproduce() -> None:
    a = build_dataset(4, 1, 5, START)
    b = build_dataset(4, 1, 5, START)
    c = build_dataset(4, 1, 6, START)
    assert np.array_equal(a.x15, b.x15) and np.array_equal(a.occupied, b.occupied)
    assert a.releases == b.releases
    assert not np.array_equal(a.x15, c.x15)
    assert {k: v.tolist() for k, v in a.traits.items()} == {k: v.tolist() for k, v in b.traits.items()}


def test_release_features_are_finite_where_defined(ds) -> None:
    for src in SOURCES:
        x = unit_features(ds, src)
        assert x.shape[:2] == ds.hourly.shape
        assert np.isfinite(x[~np.isnan(x)]).all()
    # Samples disclose single readings: about one hour in 25 carries one.
    x = unit_features(ds, next(s for s in SOURCES if s.name == "grid-operator"))
    disclosed = ~np.isnan(x[:, :, -1])
    assert 0.01 < disclosed.mean() < 0.06


# --------------------------------------------------------------------------- attacks on raw data


def _split(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.arange(0, n, 2), np.arange(1, n, 2)


def test_occupancy_attacks_beat_the_base_rate_on_raw_data(ds) -> None:
    train, test = _split(ds.n)
    y = ds.occupied
    base = max(y[test].mean(), 1 - y[test].mean())
    raw = next(s for s in SOURCES if s.name == "raw-15min")
    x = unit_features(ds, raw)
    f = x.shape[2]
    pred = occupancy_supervised(x[train].reshape(-1, f), y[train].ravel(), x[test].reshape(-1, f), seed=1)
    acc = (pred.reshape(len(test), -1) == y[test]).mean()
    assert acc > base + 0.03
    assert acc >= 0.8
    # The unsupervised threshold also knows something.
    pred_u = occupancy_threshold(ds.x15[test], 4, ds.hour_of_day)
    assert (pred_u == y[test]).mean() > 0.6
    # Shuffled labels break it (the test can fail).
    rng = np.random.default_rng(0)
    bad = occupancy_supervised(x[train].reshape(-1, f), rng.permutation(y[train].ravel()), x[test].reshape(-1, f))
    assert (bad.reshape(len(test), -1) == y[test]).mean() < acc - 0.03


def test_nilm_beats_the_trivial_f1_on_raw_data(ds) -> None:
    train, test = _split(ds.n)
    names = [a for a in NILM_APPLIANCES if (ds.truth_h[a][test] >= NILM_ON_WH).any()]
    sigs = learn_signatures({a: ds.truth15[a][train] for a in names}, names, NILM_ON_WH / 4)
    assert {s.name for s in sigs} >= {"washing", "hob"}
    for method in ("co", "hart"):
        on = nilm_co(ds.x15[test], sigs, 4) if method == "co" else nilm_hart(ds.x15[test], sigs)
        scores, trivial = [], []
        for a in names:
            truth = ds.truth_h[a][test] >= NILM_ON_WH
            if a not in on:  # never seen in training: predicted off
                pred = np.zeros_like(truth)
            else:
                pred = on[a].reshape(len(test), -1, 4).any(axis=2)
            scores.append(f1(pred, truth))
            p = truth.mean()
            trivial.append(2 * p / (1 + p))
        assert np.mean(scores) > np.mean(trivial) + 0.05, method


def test_trait_classifier_learns_a_raw_data_trait() -> None:
    # Electric showers (12-21 kW) are plain in 15-minute data; 24 households.
    ds = build_dataset(24, 1, 11, START)
    y = ds.traits["electric_water_heating"]
    assert 0 < y.sum() < len(y)
    x = household_features(ds, next(s for s in SOURCES if s.name == "raw-15min"))
    acc = (traits_classifier(x, y, seed=0) == y).mean()
    base = max(y.mean(), 1 - y.mean())
    assert acc > base + 0.05


# --------------------------------------------------------------------------- statistics


def test_wilson_interval() -> None:
    lo, hi = wilson(81, 100)
    # Wilson's score interval for 81/100 at z = 1.96, by hand: centre 0.7963, half-width 0.0763.
    assert lo == pytest.approx(0.7222, abs=5e-4) and hi == pytest.approx(0.8749, abs=5e-4)
    assert wilson(0, 10)[0] == 0.0 and wilson(10, 10)[1] == pytest.approx(1.0)
    assert wilson(5, 10)[1] - wilson(5, 10)[0] > wilson(50, 100)[1] - wilson(50, 100)[0]


def test_bootstrap_interval_covers_the_statistic() -> None:
    rng = np.random.default_rng(0)
    groups = [rng.random(50) < 0.7 for _ in range(20)]
    lo, hi = bootstrap_ci(lambda g: float(np.concatenate(g).mean()), groups, rng)
    assert lo < np.concatenate(groups).mean() < hi and hi - lo < 0.15


# --------------------------------------------------------------------------- CLI


def test_cli_json_schema(capsys, tmp_path) -> None:
    rc = main(["privacy", "evaluate", "--households", "4", "--weeks", "1", "--seed", "2", "--json",
               "--plots", str(tmp_path / "plots")])
    assert rc == 0
    d = json.loads(capsys.readouterr().out)
    assert d["format"] == FORMAT
    assert set(d) == {"format", "params", "sources", "calibration", "results", "goal", "attribution", "policy",
                      "seconds"}
    assert d["params"]["households"] == 4 and d["params"]["weeks"] == 1
    assert set(d["sources"]) == {s.name for s in SOURCES}
    assert {"h0_correlation_15min", "h0_correlation_hourly", "annual_kwh_by_residents"} <= set(d["calibration"])
    keys = {"attack", "method", "source", "metric", "value", "ci", "n", "base_rate", "prior", "baseline", "gap"}
    attacks = set()
    for r in d["results"]:
        assert set(r) == keys
        assert 0.0 <= r["value"] <= 1.0 and r["ci"][0] <= r["ci"][1]
        assert r["gap"] == pytest.approx(r["value"] - r["baseline"], abs=2e-4)
        attacks.add(r["attack"])
    assert {"occupancy", "appliances"} <= attacks and any(a.startswith("trait:") for a in attacks)
    for src in SOURCES:
        assert any(r["source"] == src.name for r in d["results"] if r["attack"] == "occupancy")
    assert set(d["goal"]) >= {"raw_occupancy_at_least_80", "releases_within_2_points", "worst_release_gap", "by_source"}
    assert set(d["goal"]["by_source"]) == {s.name for s in SOURCES if s.is_release}
    # Attribution: every release kind alone, for occupancy and every trait.
    for kind in RELEASE_KINDS:
        rows = [r for r in d["attribution"] if r["source"] == f"only:{kind}"]
        assert {r["attack"] for r in rows} == {"occupancy"} | {f"trait:{t}" for t in TRAITS}
        assert all(set(r) == keys for r in rows)
    # What the modelled releases spend is within the default policy (the guard's budgets).
    assert set(d["policy"]) == set(RECIPIENTS) and all(v["within_policy"] for v in d["policy"].values())
    pngs = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert "occupancy.png" in pngs and all(p.endswith(".png") for p in pngs)
    assert (tmp_path / "plots" / "occupancy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("argv", [["--households", "3"], ["--weeks", "0"], ["--start", "1900-01-01"],
                                  ["--seed", "-1"], ["--households", "x"]])
def test_cli_usage_errors(capsys, argv) -> None:
    try:
        rc = main(["privacy", "evaluate", *argv])
    except SystemExit as exc:  # argparse's own exit
        rc = exc.code
    assert rc == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error" in err


def test_dr_figures_are_what_the_dr_applet_releases(tmp_path) -> None:
    # The same history and event through the real demand-response applet (card, guard)
    # and through meterhub.privacy.releases.dr_figures: adjustment and reduction equal.
    from meterhub.privacy.releases import dr_figures
    from test_demand_response import N_DAYS, make_event
    from test_demand_response import START as DR_START
    from test_demand_response import Hub as DRHub

    h = make_history(start=DR_START, n_days=N_DAYS, seed=14)
    hub = DRHub(tmp_path / "hub.sqlite", h)
    ev = make_event(h)  # 17:00-19:00 on the last day, ten similar baseline days
    hub.client.put_event(ev.event_id, ev.to_bytes(), True)
    hub.feed()
    rel = hub.release(ev.event_id)
    ctx = ReleaseContext(DR_START, N_DAYS, period_days=N_DAYS)
    mine = dr_figures([m for day in h.readings for m in day], ctx, N_DAYS - 1, ev.baseline_days)
    assert (mine["adjustment"], mine["scaled_reduction"], mine["n_days"]) == (rel.adjustment, rel.scaled_reduction,
                                                                            rel.n_days)
