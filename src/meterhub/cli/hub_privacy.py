"""``meterhub hub policy show|set``, ``meterhub hub consent grant|revoke``,
``meterhub hub releases`` and ``meterhub hub migrate-store`` (docs/privacy.md).

The customer's view of the hub's privacy guard: the release policy in force (signed by
the customer's key), the publisher keys pinned at provisioning, and the release log,
which ``--verify`` checks as an auditor would (hash chain, one release per period,
no overlap, budgets and entitlements of the policy then in force).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..errors import EXIT_OK, EXIT_REJECTED
from .common import UsageError, _date

__all__ = ["add_hub_privacy_parsers"]


def _card(path: str) -> Any:
    from ..card.gp import open_card
    from ..card.guard import GUARD_AID
    from ..hub.secure_element import GuardClient

    p = Path(path)
    if not p.is_file():
        raise UsageError(f"no hub card at {path}")
    card = open_card(str(p))
    if card.registry.get(GUARD_AID) is None:
        card.close()
        raise UsageError(f"{path}: no privacy guard on this card (provisioned before issue 11?)")
    card.power_on()
    g = GuardClient(card.transmit)
    g.select()
    return card, g


def _per_30_days(policy: Any) -> str:
    days = policy.cycle.days or 30
    n = 30 / days
    return f"{policy.limit('budget', 'functionals_per_period') * n:g} functionals per recipient per 30 days"


def cmd_policy_show(args: argparse.Namespace) -> int:
    card, g = _card(args.card)
    try:
        signed = g.policy()
        pins = g.pinned()
    finally:
        card.close()
    pol = signed.policy
    if args.json:
        print(json.dumps(pol.to_dict(), indent=2, sort_keys=True))
        return EXIT_OK
    cyc = pol.cycle
    length = "calendar month" if not cyc.days else f"{cyc.days} days"
    print(f"release policy v{pol.version} (signed by the customer key {signed.key_id[:16]}...)")
    print(f"  periods: {length} from {cyc.anchor} ({_per_30_days(pol)})")
    if cyc.splits:
        print("  split days (a period is billed in pieces from each): " + ", ".join(d.isoformat() for d in cyc.splits))
    for who, kinds in sorted(pol.entitlements.items()):
        print(f"  {who}: {', '.join(kinds) or 'nothing'}")
    for sec in ("tariff", "profile", "budget", "sampling", "dr", "dp"):
        print(f"  {sec}: " + ", ".join(f"{k}={v}" for k, v in sorted(pol.limits[sec].items())))
    print("pinned publisher keys:")
    for role, keys in sorted(pins["pinned"].items()):  # type: ignore[union-attr]
        print(f"  {role}: " + ", ".join(k[:18] + "..." for k in keys))
    return EXIT_OK


def cmd_policy_set(args: argparse.Namespace) -> int:
    from ..crypto import ecdsa
    from ..hub.store import HubError
    from ..policy import PolicyError, ReleasePolicy, load_policy, sign_policy, verify_policy

    try:
        raw = Path(args.policy).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {args.policy}: {exc.strerror}") from None
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise UsageError(f"{args.policy}: not JSON") from None
    try:
        if isinstance(doc, dict) and set(doc) == {"policy", "signature"}:
            signed = load_policy(raw)
        else:
            if not args.key:
                raise UsageError("an unsigned policy needs --key (the customer's private key, PEM)")
            try:
                key = ecdsa.load_signing_key(Path(args.key).read_bytes())
            except (OSError, ValueError) as exc:
                raise UsageError(f"cannot load the customer key {args.key}: {exc}") from None
            signed = sign_policy(ReleasePolicy.from_dict(doc), key)
    except PolicyError as exc:
        raise UsageError(f"{args.policy}: {exc}") from None
    card, g = _card(args.card)
    try:
        customer = bytes.fromhex(str(g.pinned()["customer"]))
        try:
            verify_policy(signed, customer)
        except PolicyError as exc:
            print(f"REJECTED {args.policy}: {exc}")
            return EXIT_REJECTED
        try:
            g.set_policy(signed)
        except HubError as exc:
            print(f"REJECTED {args.policy}: {exc}")
            return EXIT_REJECTED
    finally:
        card.close()
    print(f"release policy v{signed.policy.version} set")
    return EXIT_OK


def cmd_releases(args: argparse.Namespace) -> int:
    from ..policy import LogError, PolicyError, load_policy, verify_policy, verify_release_log

    card, g = _card(args.card)
    try:
        count, head = g.head()
        raws = g.raw_entries()
        customer = bytes.fromhex(str(g.pinned()["customer"]))
        policies: dict[int, Any] = {}
        bad = None
        try:
            entries = verify_release_log(raws, head)
            for e in entries:
                if e.kind == "policy":
                    policies[e.policy_version] = verify_policy(load_policy(g.release(e.seq)), customer)
            if args.verify:
                verify_release_log(raws, head, policies=policies)
        except (LogError, PolicyError) as exc:
            bad = str(exc)
            entries = []
    finally:
        card.close()
    if bad is not None:
        print(f"REJECTED release log: {bad}")
        return EXIT_REJECTED
    if args.json:
        print(json.dumps({"count": count, "head": head.hex(), "entries": [e.to_dict() for e in entries]}, indent=2))
    else:
        print(f"{'seq':>4} {'kind':<10} {'recipient':<13} {'period':<23} {'policy':>6} {'funct':>5} {'samples':>7}  output")
        for e in entries:
            period = f"{e.period_from}..{e.period_to}" if e.period_from else "-"
            print(f"{e.seq:>4} {e.kind:<10} {e.recipient:<13} {period:<23} {e.policy_version:>6} "
                  f"{e.functionals:>5} {e.samples:>7}  {e.output_digest[:16]}")
        print(f"{count} entries, chain head {head.hex()[:16]}...")
    if args.verify:
        print("release log verified: chain, one release per period and kind, no overlap, budgets and entitlements")
    return EXIT_OK


def _customer_key(path: str) -> Any:
    from ..crypto import ecdsa

    try:
        return ecdsa.load_signing_key(Path(path).read_bytes())
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot load the customer key {path}: {exc}") from None


def cmd_consent_grant(args: argparse.Namespace) -> int:
    from ..hub.store import HubError
    from ..policy import PolicyError
    from ..policy.consent import Consent, dump_consent, sign_consent

    key = _customer_key(args.key)
    try:
        consent = Consent(args.id, args.recipient, args.purpose, args.resolution, args.from_, args.to, args.expires)
    except PolicyError as exc:
        raise UsageError(str(exc)) from None
    raw = dump_consent(sign_consent(consent, key))
    card, g = _card(args.card)
    try:
        g.add_consent(raw)
    except HubError as exc:
        print(f"REJECTED consent {args.id}: {exc}")
        return EXIT_REJECTED
    finally:
        card.close()
    if args.out:
        Path(args.out).write_bytes(raw)
    print(f"consent {args.id}: {args.recipient} may export {args.from_}..{args.to} at {args.resolution} min "
          f"until {args.expires} ({args.purpose})")
    return EXIT_OK


def cmd_consent_revoke(args: argparse.Namespace) -> int:
    from ..hub.store import HubError
    from ..policy.consent import sign_revocation

    key = _customer_key(args.key)
    card, g = _card(args.card)
    try:
        g.revoke_consent(sign_revocation(args.id, key))
    except HubError as exc:
        print(f"REJECTED revocation of {args.id}: {exc}")
        return EXIT_REJECTED
    finally:
        card.close()
    print(f"consent {args.id} revoked: no further exports")
    return EXIT_OK


def cmd_migrate_store(args: argparse.Namespace) -> int:
    """Re-seal a schema-2 hub.sqlite (host key file) by each meter's hub card."""
    from ..hub.secure_element import VaultClient, open_vault_card
    from ..hub.store import migrate_host_key_store
    from ..storage.sqlite import data_dir_lock

    d = Path(args.data_dir)
    cards_dir = Path(args.cards) if args.cards else d / "hubs"
    opened: list[Any] = []

    def vault_for(meter_id: str) -> Any:
        card = open_vault_card(cards_dir / f"{meter_id}.sqlite")
        opened.append(card)
        return VaultClient(card.transmit)

    with data_dir_lock(d):
        try:
            n = migrate_host_key_store(d / "hub.sqlite", vault_for)
        finally:
            for card in opened:
                card.close()
    print(f"{d / 'hub.sqlite'}: " + (f"records of {n} meters sealed by their hub cards; host key file removed"
                                      if n else "already sealed by the hub cards"))
    return EXIT_OK


def add_hub_privacy_parsers(h: Any) -> None:
    """Add ``policy show|set`` and ``releases`` to the ``hub`` subcommands."""
    pol = h.add_parser("policy", help="the customer's release policy on the hub's card")
    sub = pol.add_subparsers(dest="policy_cmd", required=True, parser_class=type(pol))
    ps = sub.add_parser("show", help="print the policy in force and the pinned publisher keys")
    ps.add_argument("--card", required=True, help="the hub's card file (e.g. meterhub-data/hubs/ID.sqlite)")
    ps.add_argument("--json", action="store_true", help="print the policy object (editable, for `set`)")
    ps.set_defaults(func=cmd_policy_show)
    pt = sub.add_parser("set", help="install a new policy version (signed by the customer's key)")
    pt.add_argument("--card", required=True, help="the hub's card file")
    pt.add_argument("--policy", required=True, help="a policy object (signed here with --key) or a signed policy file")
    pt.add_argument("--key", help="the customer's private key (PEM; ID.sqlite.customer.pem after provisioning) "
                    "(default: none, --policy must already be signed)")
    pt.set_defaults(func=cmd_policy_set)
    con = h.add_parser("consent", help="consents for exporting readings (Green Button), signed by the customer")
    csub = con.add_subparsers(dest="consent_cmd", required=True, parser_class=type(con))
    cg = csub.add_parser("grant", help="sign a consent with the customer key and give it to the hub")
    cg.add_argument("--card", required=True, help="the hub's card file")
    cg.add_argument("--key", required=True, help="the customer's private key (PEM)")
    cg.add_argument("--id", required=True, help="consent id (1-64 of A-Z a-z 0-9 _ . -)")
    cg.add_argument("--recipient", required=True, choices=["supplier", "grid-operator", "third-party"],
                    help="the security domain that may export under this consent")
    cg.add_argument("--purpose", required=True, help="what the recipient may use the readings for")
    cg.add_argument("--resolution", type=int, default=60, help="minutes per exported value (default 60)")
    cg.add_argument("--from", dest="from_", type=_date, required=True, help="first day of readings")
    cg.add_argument("--to", type=_date, required=True, help="last day of readings, inclusive")
    cg.add_argument("--expires", type=_date, required=True, help="no exports once the hub holds readings of this day")
    cg.add_argument("--out", help="also write the signed consent here (default: none, not written)")
    cg.set_defaults(func=cmd_consent_grant)
    cr = csub.add_parser("revoke", help="revoke a consent: further exports stop at once")
    cr.add_argument("--card", required=True, help="the hub's card file")
    cr.add_argument("--key", required=True, help="the customer's private key (PEM)")
    cr.add_argument("--id", required=True, help="the consent id")
    cr.set_defaults(func=cmd_consent_revoke)
    hr = h.add_parser("releases", help="the release log: what the hub released, to whom, for which period")
    hr.add_argument("--card", required=True, help="the hub's card file")
    hr.add_argument("--verify", action="store_true", help="check the log as an auditor (exit 1 if it does not verify)")
    hr.add_argument("--json", action="store_true", help="machine-readable output")
    hr.set_defaults(func=cmd_releases)
    hg = h.add_parser("migrate-store", help="move hub.sqlite's records from the host key file under the hub cards' keys")
    hg.add_argument("--data-dir", default="meterhub-data", help="the hub's state (hub.sqlite)")
    hg.add_argument("--cards", metavar="DIR", help="the meters' hub cards, METER.sqlite each (default: DATA_DIR/hubs)")
    hg.set_defaults(func=cmd_migrate_store)
