"""The ``privacy`` section of ``meterhub demo``: what each recipient got from the hubs.

For every hub card of the demo it reads the release log through the privacy guard,
verifies it as an auditor would (:func:`meterhub.policy.verify_release_log`, with the
customer-signed policies from the log itself) and sums, per recipient, the releases by
kind, the linear functionals of the busiest hub and period against the policy's budget,
and the readings released with openings (samples).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

__all__ = ["format_privacy", "privacy_report"]


def privacy_report(data_dir: str | Path) -> dict[str, Any]:
    from .card.gp import open_card
    from .card.guard import GUARD_AID
    from .hub.secure_element import GuardClient
    from .policy import RECIPIENTS, load_policy, verify_policy, verify_release_log

    out: dict[str, Any] = {"hubs": 0, "logs_verified": 0, "recipients": {}}
    per: dict[str, dict[str, Any]] = {
        r: {"entitled": [], "releases": {}, "max_functionals_per_period": 0, "budget": 0, "samples": 0}
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
            cell = e.period_from  # a demand-response release names its event day: charge its period
            if e.kind == "dr":
                cell = policy.cycle.period_of(date.fromisoformat(e.period_from))[0].isoformat()
            key = (e.recipient, cell)
            spent[key] = spent.get(key, 0) + e.functionals
        for r in RECIPIENTS:
            per[r]["entitled"] = list(policy.entitlements.get(r, ()))
            per[r]["budget"] = policy.limit("budget", "functionals_per_period")
            used = max((v for (who, _), v in spent.items() if who == r), default=0)
            per[r]["max_functionals_per_period"] = max(per[r]["max_functionals_per_period"], used)
        out["min_k"] = policy.limit("sampling", "min_k")
    out["recipients"] = per
    return out


def format_privacy(d: dict[str, Any]) -> str:
    lines = [
        f"Privacy: what each recipient received (release logs of {d['hubs']} hubs verified: "
        f"{d['logs_verified']}/{d['hubs']}; policy v{d.get('policy_version', '-')}, one release per period and kind)",
        f"{'recipient':<14} {'entitled to':<20} {'releases':<28} {'functionals/period (max hub)':>29} {'readings':>9}",
    ]
    for who, p in d["recipients"].items():
        rel = ", ".join(f"{k} {n}" for k, n in sorted(p["releases"].items())) or "none"
        lines.append(
            f"{who:<14} {', '.join(p['entitled']) or 'nothing':<20} {rel:<28} "
            f"{p['max_functionals_per_period']:>20} of {p['budget']:>3}  {p['samples']:>9}"
        )
    return "\n".join(lines)
