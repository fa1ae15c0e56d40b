"""CLI of the utility service (docs/service.md): ``utility serve``, ``utility push``,
``utility keys add``, ``utility verify-all``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..errors import EXIT_OK, EXIT_REJECTED
from .common import UsageError, _lines, _number, _read

__all__ = ["add_utility_service_parsers"]

DEFAULT_DB = "meterhub-data/utility.sqlite"
_seconds = _number(float, "a number of seconds", 0.0, 3600.0, lo_open=True)


def _db(text: str) -> str:
    """A ``postgresql://`` URL or a SQLite file path."""
    from ..storage.postgres import is_postgres_url

    if is_postgres_url(text):
        return text
    if "://" in text:
        raise UsageError(f"--db {text!r}: a postgresql:// URL or a SQLite file path")
    return text


def _listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)


def _api_key(path: str) -> str:
    key = _read(path, "API key").decode("utf-8", "replace").strip()
    if not key:
        raise UsageError(f"API key file {path} is empty")
    return key


def cmd_utility_serve(args: argparse.Namespace) -> int:
    import logging

    import uvicorn

    from ..service.app import OutputLimits, create_app
    from ..service.keys import ApiKeys, KeyError_
    from ..utility.store import UtilityStore

    db = _db(args.db)
    try:
        ApiKeys.load(args.keys)  # refuse a malformed keys file before listening
    except KeyError_ as exc:
        raise UsageError(str(exc)) from None
    supplier_key = None
    if args.supplier_key:
        try:
            supplier_key = bytes.fromhex(_read(args.supplier_key, "supplier key").decode("ascii").strip())
        except (ValueError, UnicodeDecodeError):
            raise UsageError(f"{args.supplier_key}: supplier key is not hex") from None
    trust = None
    if args.trust:
        from ..utility.deliveries import TrustAnchors

        try:
            trust = TrustAnchors.demo() if args.trust == "demo" else TrustAnchors.load(args.trust)
        except ValueError as exc:
            raise UsageError(str(exc).splitlines()[0]) from None
    tls: dict[str, Any] = {}
    if args.tls_cert or args.tls_key or args.tls_client_ca:
        from ..service.tls import server_tls_config

        if not (args.tls_cert and args.tls_key):
            raise UsageError("--tls-cert and --tls-key go together (and --tls-client-ca needs them)")
        for f in (args.tls_cert, args.tls_key, args.tls_client_ca):
            if f:
                _read(f, "TLS file")  # a clear error before listening
        tls = server_tls_config(args.tls_cert, args.tls_key, args.tls_client_ca, head_timeout=args.head_timeout)
    else:
        from ..service.guard import guarded_protocol

        tls = {"http": guarded_protocol(args.head_timeout)}
    UtilityStore(db if "://" in db else Path(db)).close()  # refuse a bad database before listening
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    limits = OutputLimits(rate=args.output_rate, burst=args.output_burst, max_rejected=args.max_rejected_outputs)
    app = create_app(db, args.keys, supplier_key=supplier_key, max_body=args.max_body, trust=trust,
                     body_timeout=args.body_timeout, limits=limits)
    host, port = args.listen
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False,
                limit_concurrency=args.limit_concurrency, **tls)
    return EXIT_OK


def cmd_utility_keys_add(args: argparse.Namespace) -> int:
    from ..service.keys import ApiKeys, KeyError_
    from .common import _write

    if bool(args.key_out) == bool(args.tls_subject):
        raise UsageError("give --key-out (an API key) or --tls-subject (a client certificate), not both")
    try:
        keys = ApiKeys.load(args.keys)
        if args.tls_subject:
            keys.add_subject(args.tls_subject, args.party, args.role, args.meter or [])
            keys.save(args.keys)
            print(f"certificate subject {args.tls_subject} is {args.party} ({args.role})")
            return EXIT_OK
        key = keys.add(args.party, args.role, args.meter or [])
    except KeyError_ as exc:
        raise UsageError(str(exc)) from None
    _write(args.key_out, key + "\n", secret=True)
    keys.save(args.keys)
    print(f"key for {args.party} ({args.role}) written to {args.key_out}")
    return EXIT_OK


_OUTPUT_OPTIONS = (
    ("settlement", "settlement"),
    ("scores", "scores"),
    ("samples", "samples"),
    ("dr-release", "dr_release"),
    ("feeder-day", "feeder_day"),
)


def cmd_utility_push(args: argparse.Namespace) -> int:
    import ssl

    from ..model.display import shown
    from ..model.errors import FormatError
    from ..model.formats.upload import DayUpload
    from ..service.push import PushClient, PushError
    from ..utility.deliveries import REF_KINDS

    uploads = []
    for path in args.uploads or []:
        for n, line in enumerate(_lines(path, "uploads file"), 1):
            try:
                uploads.append(DayUpload.from_json(line))
            except FormatError as exc:
                raise UsageError(f"{path}:{n}: {exc}") from None
    args.statement = args.statement or []
    statements = [_read(p, "bill statement") for p in args.statement]
    outputs = [(kind, path, _read(path, kind)) for kind, opt in _OUTPUT_OPTIONS for path in getattr(args, opt) or []]
    refs = []
    for spec in args.reference or []:
        kind, sep, path = spec.partition("=")
        if not sep or kind not in REF_KINDS:
            raise UsageError(f"--reference {spec!r}: KIND=FILE with KIND one of {', '.join(REF_KINDS)}")
        refs.append((kind, path, _read(path, kind)))
    if not uploads and not statements and not outputs and not refs:
        raise UsageError("nothing to push (give --uploads, --statement, an output or --reference)")
    if not args.api_key and not args.tls_cert:
        raise UsageError("give --api-key, or --tls-cert and --tls-key (mutual TLS)")
    if bool(args.tls_cert) != bool(args.tls_key):
        raise UsageError("--tls-cert and --tls-key go together")
    try:
        client = PushClient(args.server, _api_key(args.api_key) if args.api_key else "",
                            tls_ca=args.tls_ca, tls_cert=args.tls_cert, tls_key=args.tls_key)
    except (OSError, ssl.SSLError) as exc:  # a missing or unusable certificate, key or CA file
        raise UsageError(f"TLS: {getattr(exc, 'strerror', None) or exc}") from None
    rejected = 0
    try:
        for kind, path, body in refs:  # reference data first: the outputs are checked against it
            ref = client.push_reference(kind, body)
            print(f"{'ALREADY' if ref['duplicate'] else 'STORED'} {kind} {shown(ref['id'])} ({shown(path)})")
        if uploads:  # then the days the outputs are verified against
            res = client.push_days(uploads, days_per_request=args.days_per_request)
            stored = sum(r["status"] == "stored" for r in res)
            print(f"days: {stored} stored, {len(res) - stored} already there")
        for kind, path, body in outputs:
            v = client.push_output(kind, body)
            rejected += not v["verified"]
            word = "VERIFIED" if v["verified"] else "REJECTED"
            print(f"{word} {kind} {shown(path)}{': ' + shown(v['reason']) if v['reason'] else ''}")
        for path, st in zip(args.statement, statements, strict=True):
            v = client.push_statement(st)
            word = "VERIFIED" if v["verified"] else "REJECTED"
            rejected += not v["verified"]
            print(f"{word} {shown(path)}{': ' + shown(v['reason']) if v['reason'] else ''}")
    except PushError as exc:
        print(f"REJECTED by {shown(args.server)}: {shown(str(exc))}")
        return EXIT_REJECTED
    finally:
        client.close()
    return EXIT_REJECTED if rejected else EXIT_OK


def cmd_utility_verify_all(args: argparse.Namespace) -> int:
    from ..service.scaleout import verify_all

    db = _db(args.db)
    if not args.dask and args.workers < 1:
        raise UsageError("--workers must be at least 1")
    ok, bad = verify_all(db, scheduler=args.dask, workers=args.workers, meters_per_task=args.meters_per_task)
    print(f"verified {ok}, rejected {bad}")
    return EXIT_REJECTED if bad else EXIT_OK


def add_utility_service_parsers(u: Any) -> None:
    """Add ``serve``, ``push``, ``keys`` and ``verify-all`` to the ``utility`` subcommands."""
    s = u.add_parser("serve", help="the utility's HTTP service for deliveries (docs/service.md)")
    s.add_argument("--db", default=DEFAULT_DB, help=f"SQLite file or postgresql:// URL (default: {DEFAULT_DB})")
    s.add_argument("--listen", type=_listen, default="127.0.0.1:8750", metavar="HOST:PORT",
                   help="address to listen on (default: 127.0.0.1:8750)")
    s.add_argument("--keys", default="meterhub-data/api-keys.json",
                   help="API keys file (`utility keys add`) (default: meterhub-data/api-keys.json)")
    s.add_argument("--supplier-key", help="file with the tariff signer's public key (hex), needed to "
                   "register meters (default: none, registration refused)")
    s.add_argument("--max-body", type=int, default=1 << 20, help="largest request body in bytes (default: 1048576)")
    s.add_argument("--trust", help="trust file (meterhub/service-trust/v1): the keys reference data is checked "
                   "under; 'demo' for the demo's publicly known keys (default: none, reference data refused)")
    s.add_argument("--tls-cert", help="serve HTTPS with this certificate (PEM) (default: plain HTTP)")
    s.add_argument("--tls-key", help="the certificate's private key (PEM) (default: none)")
    s.add_argument("--tls-client-ca", help="require client certificates chaining to this CA (PEM): mutual TLS; "
                   "the certificate's subject names the party (default: none, no client certificates)")
    s.add_argument("--head-timeout", type=_seconds, default=10.0,
                   help="seconds a client has to send a request head, from its first byte")
    s.add_argument("--body-timeout", type=_seconds, default=30.0,
                   help="seconds a client has to send a request body")
    s.add_argument("--limit-concurrency", type=_number(int, "an integer", 1, 1_000_000), default=500,
                   help="connections and requests at once before 503 answers (below the descriptor limit)")
    s.add_argument("--output-rate", type=_number(float, "a number", 0.001, 1e6), default=50.0,
                   help="output deliveries a second per key before 429 answers (default: 50.0)")
    s.add_argument("--output-burst", type=_number(int, "an integer", 1, 1_000_000), default=500,
                   help="output deliveries per key at once above the rate (default: 500)")
    s.add_argument("--max-rejected-outputs", type=_number(int, "an integer", 1, 1 << 31), default=1000,
                   help="rejected outputs recorded per key in 24 hours; then 429 until the oldest is "
                   "24 hours old (default: 1000)")
    s.set_defaults(func=cmd_utility_serve)

    k = u.add_parser("keys", help="API keys of the service's parties")
    ksub = k.add_subparsers(dest="keys_cmd", required=True, parser_class=type(k))
    ka = ksub.add_parser("add", help="create a key for a party; only its hash goes in the keys file")
    ka.add_argument("--keys", default="meterhub-data/api-keys.json",
                    help="API keys file (default: meterhub-data/api-keys.json)")
    ka.add_argument("--party", required=True, help="party name (a supplier's name as meters are registered with)")
    ka.add_argument("--role", required=True, choices=["meter", "supplier", "grid"], help="what the key may do")
    ka.add_argument("--meter", action="append",
                    help="a meter id a meter key may deliver for; repeatable (default: none)")
    ka.add_argument("--key-out", help="file to write the new key to (mode 0600) (default: none; then --tls-subject)")
    ka.add_argument("--tls-subject", help="instead of a key: the RFC 4514 subject of the party's client "
                    "certificate, e.g. 'CN=head-end-1,O=Utility' (default: none)")
    ka.set_defaults(func=cmd_utility_keys_add)

    p = u.add_parser("push", help="deliver day uploads and bill statements to a utility service")
    p.add_argument("--server", required=True, help="service URL, e.g. http://127.0.0.1:8750")
    p.add_argument("--api-key", help="file holding this party's API key (default: none; then --tls-cert)")
    p.add_argument("--uploads", action="append",
                   help="a meter's uploads file (ID.uploads.jsonl); repeatable (default: none)")
    p.add_argument("--statement", action="append",
                   help="a bill statement file (JSON); repeatable (default: none)")
    p.add_argument("--days-per-request", type=int, default=100, help="days per delivery (default: 100)")
    for kind, opt in _OUTPUT_OPTIONS:
        p.add_argument(f"--{opt.replace('_', '-')}", dest=opt, action="append", metavar="FILE",
                       help=f"a {kind} output to deliver; repeatable (default: none)")
    p.add_argument("--reference", action="append", metavar="KIND=FILE",
                   help="reference data: price-index, load-profile, dr-event, aggregation-group or coin-toss; "
                   "repeatable, sent before the outputs (default: none)")
    p.add_argument("--tls-ca", help="CA file the server's certificate must chain to (default: system roots)")
    p.add_argument("--tls-cert", help="client certificate (PEM) for mutual TLS (default: none)")
    p.add_argument("--tls-key", help="the client certificate's private key (PEM) (default: none)")
    p.set_defaults(func=cmd_utility_push)

    v = u.add_parser("verify-all", help="verify every pending bill statement, partitioned by meter, on Dask")
    v.add_argument("--db", default=DEFAULT_DB, help=f"SQLite file or postgresql:// URL (default: {DEFAULT_DB})")
    v.add_argument("--dask", help="address of a dask scheduler, e.g. tcp://host:8786 (default: a local cluster)")
    v.add_argument("--workers", type=int, default=1, help="local cluster worker processes (default: 1)")
    v.add_argument("--meters-per-task", type=_number(int, "an integer", 1, 1_000_000),
                   help="meters per Dask task (default: none, about 4 tasks per worker, at most 1000 meters each)")
    v.set_defaults(func=cmd_utility_verify_all)
