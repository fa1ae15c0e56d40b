"""Mutual TLS on the utility's service (docs/service.md, "Mutual TLS"): a real uvicorn
on 127.0.0.1 with certificates made at test time by ``cryptography`` (a test CA). A
client without a certificate, or with one from another CA, is refused in the TLS
handshake; a good certificate is accepted and its subject names the party."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from helpers import make_history
from meterhub.service.app import create_app
from meterhub.service.keys import ApiKeys
from meterhub.service.push import PushClient, PushError
from meterhub.service.runner import serve_in_thread
from meterhub.service.tls import server_tls_config


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "meterhub test"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject: x509.Name, key, issuer: x509.Name, issuer_key, *, ca: bool, server: bool = False):
    now = dt.datetime.now(dt.UTC)
    b = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
         .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
         .not_valid_after(now + dt.timedelta(days=1))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if server:
        b = b.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                            critical=False)
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    elif not ca:
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def _write(d, name: str, cert, key) -> tuple[str, str]:
    c, k = d / f"{name}.crt", d / f"{name}.key"
    c.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    k.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))
    return str(c), str(k)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    out = {}
    for ca_name in ("ca", "other-ca"):
        k = ec.generate_private_key(ec.SECP256R1())
        out[ca_name] = (_cert(_name(ca_name), k, _name(ca_name), k, ca=True), k)
        out[ca_name + "-files"] = _write(d, ca_name, *out[ca_name])
    ca, ca_key = out["ca"]
    sk = ec.generate_private_key(ec.SECP256R1())
    out["server"] = _write(d, "server", _cert(_name("utility"), sk, ca.subject, ca_key, ca=False, server=True), sk)
    for name, (issuer, ikey) in (("head-end", out["ca"]), ("stranger", out["ca"]), ("forged", out["other-ca"])):
        k = ec.generate_private_key(ec.SECP256R1())
        cert = _cert(_name(name if name != "forged" else "head-end"), k, issuer.subject, ikey, ca=False)
        out[name] = _write(d, name, cert, k)
        out[name + "-subject"] = cert.subject.rfc4514_string()
    return out


def test_mutual_tls(tmp_path, pki):
    h = make_history(n_days=2, seed=9)
    keys = ApiKeys({})
    keys.add_subject(pki["head-end-subject"], "head-end", "meter", ["m-test"])
    grid = keys.add("grid", "grid")
    keys.save(tmp_path / "keys.json")
    assert ApiKeys.load(tmp_path / "keys.json").party_of_subject(pki["head-end-subject"]).role == "meter"
    from meterhub.crypto import ecdsa
    from meterhub.tariffs import demo_supplier_key, dump_tariff, example_signed_tariff

    app = create_app(str(tmp_path / "u.sqlite"), tmp_path / "keys.json",
                     supplier_key=ecdsa.public_bytes(demo_supplier_key()))
    ca_file = pki["ca-files"][0]
    cert, key = pki["server"]
    with serve_in_thread(app, **server_tls_config(cert, key, ca_file)) as url:
        assert url.startswith("https://127.0.0.1:")
        # no client certificate: the handshake (or the first read, TLS 1.3) fails
        with pytest.raises(httpx.TransportError):
            httpx.get(url + "/healthz", verify=ssl.create_default_context(cafile=ca_file), timeout=10)
        # a certificate with the right subject from another CA: refused alike
        with pytest.raises(PushError) as e:
            PushClient(url, "", retries=0, tls_ca=ca_file, tls_cert=pki["forged"][0],
                       tls_key=pki["forged"][1]).coverage("m-test")
        assert e.value.status == 0
        # the server's certificate is checked too: a client trusting another CA refuses it
        with pytest.raises(PushError):
            PushClient(url, "", retries=0, tls_ca=pki["other-ca-files"][0], tls_cert=pki["head-end"][0],
                       tls_key=pki["head-end"][1]).coverage("m-test")
        # a good certificate whose subject is no party: TLS passes, the API says 401
        with pytest.raises(PushError, match="HTTP 401.*no party for certificate subject"):
            PushClient(url, "", tls_ca=ca_file, tls_cert=pki["stranger"][0],
                       tls_key=pki["stranger"][1]).coverage("m-test")
        # the head-end's certificate: it is the meter party, authorised for m-test only
        g = PushClient(url, grid, tls_ca=ca_file, tls_cert=pki["stranger"][0], tls_key=pki["stranger"][1])
        g.register_meter({"meter_id": "m-test", "public_key": ecdsa.public_bytes(h.meter.signing_key).hex(),
                          "tz": "Europe/Berlin", "interval_minutes": 15,
                          "tariff": dump_tariff(example_signed_tariff()).decode(), "supplier": "s"})
        he = PushClient(url, "", tls_ca=ca_file, tls_cert=pki["head-end"][0], tls_key=pki["head-end"][1])
        assert [r["status"] for r in he.push_days(h.uploads())] == ["stored", "stored"]
        assert len(he.coverage("m-test")["uploaded"]) == 2
        with pytest.raises(PushError, match="HTTP 403"):
            he.push_statement(h.statement.to_json())  # a meter party may not post statements
        for c in (g, he):
            c.close()
    # control: the same request to a server with TLS but no --tls-client-ca succeeds, so the
    # refusals above are the client-certificate requirement
    with serve_in_thread(app, **server_tls_config(cert, key, None)) as url:
        r = httpx.get(url + "/healthz", verify=ssl.create_default_context(cafile=ca_file), timeout=10)
        assert r.status_code == 200


def test_push_cli_over_mutual_tls(tmp_path, pki, capsys):
    from meterhub.cli import main

    h = make_history(n_days=1, seed=10)
    keys = ApiKeys({})
    keys.add_subject(pki["head-end-subject"], "head-end", "meter", ["m-test"])
    keys.save(tmp_path / "keys.json")
    (tmp_path / "up.jsonl").write_text("".join(u.to_json() + "\n" for u in h.uploads()))
    app = create_app(str(tmp_path / "u.sqlite"), tmp_path / "keys.json")
    ca_file = pki["ca-files"][0]
    with serve_in_thread(app, **server_tls_config(*pki["server"], ca_file)) as url:
        base = ["utility", "push", "--server", url, "--tls-ca", ca_file, "--uploads", str(tmp_path / "up.jsonl")]
        # the meter is not registered: the service refuses the day (exit 1), over an authenticated channel
        assert main([*base, "--tls-cert", pki["head-end"][0], "--tls-key", pki["head-end"][1]]) == 1
        assert "REJECTED by" in capsys.readouterr().out
        assert main([*base, "--tls-cert", pki["head-end"][0]]) == 2  # key missing: usage
        assert main([*base, "--tls-cert", str(tmp_path / "nope.crt"), "--tls-key", pki["head-end"][1]]) == 2
        assert "TLS:" in capsys.readouterr().err
    # `utility keys add --tls-subject` writes the subject entry
    assert main(["utility", "keys", "add", "--keys", str(tmp_path / "k2.json"), "--party", "he", "--role", "meter",
                 "--meter", "m1", "--tls-subject", "CN=he,O=x"]) == 0
    assert ApiKeys.load(tmp_path / "k2.json").party_of_subject("CN=he,O=x").meters == frozenset({"m1"})
    assert main(["utility", "keys", "add", "--keys", str(tmp_path / "k2.json"), "--party", "he",
                 "--role", "meter"]) == 2
