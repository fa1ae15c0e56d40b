"""The ``privacy`` section of ``meterhub demo``: what each recipient got from the hubs.

For every hub card of the demo it reads the release log through the privacy guard,
verifies it as an auditor would (:func:`meterhub.policy.verify_release_log`, with the
customer-signed policies from the log itself) and sums, per recipient, the releases by
kind, the linear functionals of the busiest hub and period against the policy's budget,
and the readings released with openings (samples); ``periods`` breaks this down per
policy period (releases by kind, functionals of the busiest hub, budget left).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

__all__ = ["format_privacy", "privacy_report"]


def privacy_report(data_dir: str | Path) -> dict[str, Any]:
    from ..card.gp import open_card
    from ..card.guard import GUARD_AID
    from ..hub.secure_element import GuardClient
    from ..policy import AGGREGATE_KINDS, RECIPIENTS, load_policy, verify_policy, verify_release_log

    out: dict[str, Any] = {"hubs": 0, "logs_verified": 0, "recipients": {}}
    per: dict[str, dict[str, Any]] = {
        r: {"entitled": [], "releases": {}, "max_functionals_per_period": 0, "budget": 0, "samples": 0, "periods": {}}
        for r in RECIPIENTS
    }
    for path in sorted((Path(data_dir) / "hubs").glob("*.sqlite")):
        card = open_card(str(path))
        try:
            if card.registry.get(GUARD_AID) is None:
                continue
            card.power_on()
            g = GuardClient(card.transmit)
            g.select()
            count, head = g.head()
            raws = g.raw_entries()
            customer = bytes.fromhex(str(g.pinned()["customer"]))
            entries = verify_release_log(raws, head)
            policies = {e.policy_version: verify_policy(load_policy(g.release(e.seq)), customer)
                        for e in entries if e.kind == "policy"}
            verify_release_log(raws, head, policies=policies)
        finally:
            card.close()
        out["hubs"] += 1
        out["logs_verified"] += 1
        policy = policies[max(policies)]
        out["policy_version"] = policy.version
        out["cycle"] = policy.cycle.to_dict()
        spent: dict[tuple[str, str], int] = {}
        for e in entries:
            if e.kind == "policy":
                continue
            p = per[e.recipient]
            p["releases"][e.kind] = p["releases"].get(e.kind, 0) + 1
            p["samples"] += e.samples
            if e.kind in AGGREGATE_KINDS:
                # group sums per day (docs/fraud.md): outside the per-household budget
                p["hourly_group_sums"] = p.get("hourly_group_sums", 0) + e.functionals
                continue
            cell = e.period_from  # a demand-response release names its event day: charge its period
            if e.kind == "dr":
                cell = policy.cycle.period_of(date.fromisoformat(e.period_from))[0].isoformat()
            key = (e.recipient, cell)
            spent[key] = spent.get(key, 0) + e.functionals
            per_period = p["periods"].setdefault(
                e.period_from,
                {"period_to": e.period_to, "releases": {}, "functionals": 0, "samples": 0},
            )
            per_period["releases"][e.kind] = per_period["releases"].get(e.kind, 0) + 1
            per_period["samples"] += e.samples
        for (who, start), used in spent.items():
            cell = per[who]["periods"][start]
            cell["functionals"] = max(cell["functionals"], used)  # the busiest hub
        for r in RECIPIENTS:
            per[r]["entitled"] = list(policy.entitlements.get(r, ()))
            per[r]["budget"] = policy.limit("budget", "functionals_per_period")
            used = max((v for (who, _), v in spent.items() if who == r), default=0)
            per[r]["max_functionals_per_period"] = max(per[r]["max_functionals_per_period"], used)
            for cell in per[r]["periods"].values():
                cell["budget_left"] = per[r]["budget"] - cell["functionals"]
        out["min_k"] = policy.limit("sampling", "min_k")
    out["recipients"] = per
    return out


def format_privacy(d: dict[str, Any]) -> str:
    lines = [
        f"Privacy: what each recipient received (release logs of {d['hubs']} hubs verified: "
        f"{d['logs_verified']}/{d['hubs']}; policy v{d.get('policy_version', '-')}, one release per period and kind)",
    ]
    ent = {who: ", ".join(p["entitled"]) or "nothing" for who, p in d["recipients"].items()}
    rels = {who: ", ".join(f"{k} {n}" for k, n in sorted(p["releases"].items())) or "none"
            for who, p in d["recipients"].items()}
    we = max(20, *(len(v) for v in ent.values()))
    wr = max(28, *(len(v) for v in rels.values()))
    lines.append(f"{'recipient':<14} {'entitled to':<{we}} {'releases':<{wr}} {'functionals/period (max hub)':>29} "
                 f"{'readings':>9}")
    for who, p in d["recipients"].items():
        rel = rels[who]
        lines.append(
            f"{who:<14} {ent[who]:<{we}} {rel:<{wr}} "
            f"{p['max_functionals_per_period']:>20} of {p['budget']:>3}  {p['samples']:>9}"
        )
        if p.get("hourly_group_sums"):
            lines.append(f"{'':<14} aggregate releases: {p['hourly_group_sums']} masked hourly values, per group "
                         "(>= 5 households) and day, outside the per-household budget (docs/fraud.md)")
    return "\n".join(lines)
