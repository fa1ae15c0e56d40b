"""``meterhub tariff``: the signed example tariff and the check of a tariff file.
"""

from __future__ import annotations

import argparse
from typing import Any

from ..errors import EXIT_OK
from .common import (
    UsageError,
    _Parser,
    _read,
    _write,
)


def _signed_tariff(path: str, supplier_key_path: str | None):
    from ..tariffs import TariffError, load_tariff, verify_tariff

    try:
        signed = load_tariff(_read(path, "tariff"))
    except TariffError as exc:
        raise UsageError(f"{path}: {exc}") from None
    if supplier_key_path is None:
        return signed, signed.tariff
    key = _read(supplier_key_path, "supplier key").strip()
    try:
        tariff = verify_tariff(signed, bytes.fromhex(key.decode()))
    except (TariffError, ValueError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: {exc}") from None
    return signed, tariff




# -- tariff -----------------------------------------------------------------
def cmd_tariff_example(args: argparse.Namespace) -> int:
    from ..crypto import ecdsa
    from ..tariffs import demo_supplier_key, dump_tariff, example_signed_tariff

    _write(args.out, dump_tariff(example_signed_tariff()))
    if args.key_out:
        _write(args.key_out, ecdsa.public_bytes(demo_supplier_key()).hex() + "\n")
    print(f"wrote {args.out} (signed with the public demo supplier key; never use it for real)")
    return EXIT_OK


def cmd_tariff_check(args: argparse.Namespace) -> int:
    _, t = _signed_tariff(args.file, args.supplier_key)
    print(
        f"tariff {t.tariff_id} v{t.version}: {len(t.bands)} bands, valid {t.valid_from}..{t.valid_until}"
        + (", signature verified" if args.supplier_key else ", signature NOT checked (no --supplier-key)")
    )
    return EXIT_OK




def add_tariff_parsers(sub: Any) -> None:
    """``meterhub tariff example|check``."""
    t = sub.add_parser("tariff", help="tariff files").add_subparsers(dest="tariff_cmd", required=True, parser_class=_Parser)
    te = t.add_parser("example", help="write the signed example tariff")
    te.add_argument("--out", required=True, help="where to write the signed tariff (JSON)")
    te.add_argument("--key-out", help="also write the demo supplier's public key (hex) (default: none, not written)")
    te.set_defaults(func=cmd_tariff_example)
    tc = t.add_parser("check", help="validate a tariff file and its signature")
    tc.add_argument("file", help="signed tariff file (JSON)")
    tc.add_argument("--supplier-key", help="file with the supplier's public key (hex) (default: none, signature not checked)")
    tc.set_defaults(func=cmd_tariff_check)
