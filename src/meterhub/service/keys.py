"""Per-party API keys of the utility's HTTP service (docs/service.md, "Authentication").

The keys file holds no secret: each entry is the SHA-256 of a key (domain-separated),
the party it belongs to, its role and, for a meter role, the meter ids it may deliver
for. Roles:

* ``meter``: a meter or its head-end; delivers day uploads for its listed meters only.
* ``supplier``: delivers bill statements for its own customers (meters registered with
  ``supplier`` equal to the party's name) and reads their verdicts and coverage.
* ``grid``: the grid operator / the utility's own back office: registers meters, reads all.

With mutual TLS (docs/service.md), an entry may instead name a client certificate's
subject (``tls_subject``, the RFC 4514 string): a request over a connection whose
verified client certificate has that subject acts as that party.

A key is looked up by its digest (the digest of a secret 256-bit key reveals nothing
about it, so a dictionary lookup by digest leaks no key material by its timing).
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from pathlib import Path

from ..errors import MeterhubError
from ..model import strictjson
from ..storage.sqlite import atomic_write

__all__ = ["ROLES", "ApiKeys", "KeyError_", "Party", "key_digest", "new_key"]

ROLES = ("meter", "supplier", "grid")
KEYS_FORMAT = "meterhub/api-keys/v1"
_DOMAIN = b"meterhub/api-key/v1\x00"


class KeyError_(MeterhubError, ValueError):
    """A keys file that cannot be used (one line)."""


@dataclass(frozen=True, slots=True)
class Party:
    """Who an API key belongs to and what it may do."""

    name: str
    role: str
    meters: frozenset[str]


def key_digest(key: str) -> str:
    """Hex SHA-256 of a presented key, domain-separated from every other hash here."""
    return hashlib.sha256(_DOMAIN + key.encode("utf-8")).hexdigest()


def new_key() -> str:
    """A fresh API key: 256 bits from :mod:`secrets`, URL-safe text."""
    return "mhk_" + secrets.token_urlsafe(32)


class ApiKeys:
    """The keys file: digest -> :class:`Party`."""

    def __init__(self, entries: dict[str, Party], subjects: dict[str, Party] | None = None) -> None:
        self._by_digest = dict(entries)
        self._by_subject = dict(subjects or {})

    @classmethod
    def load(cls, path: str | Path) -> ApiKeys:
        try:
            raw = Path(path).read_bytes()
        except FileNotFoundError:
            return cls({})
        except OSError as exc:
            raise KeyError_(f"cannot read keys file {path}: {exc.strerror}") from None
        try:
            doc = strictjson.loads(raw, "keys file")
            if not isinstance(doc, dict) or doc.get("format") != KEYS_FORMAT:
                raise ValueError(f"format must be {KEYS_FORMAT}")
            entries: dict[str, Party] = {}
            subjects: dict[str, Party] = {}
            for e in doc["keys"]:
                if "tls_subject" in e:
                    subject, role, name, meters = e["tls_subject"], e["role"], e["party"], e.get("meters", [])
                    if role not in ROLES or not isinstance(subject, str) or not subject or not isinstance(name, str):
                        raise ValueError("bad tls_subject entry")
                    if not (isinstance(meters, list) and all(isinstance(m, str) for m in meters)):
                        raise ValueError("meters must be a list of meter ids")
                    subjects[subject] = Party(name, role, frozenset(meters))
                    continue
                digest, role, name = e["sha256"], e["role"], e["party"]
                meters = e.get("meters", [])
                if role not in ROLES:
                    raise ValueError(f"unknown role {role!r}")
                if not (isinstance(digest, str) and len(digest) == 64 and isinstance(name, str)):
                    raise ValueError("bad key entry")
                if not (isinstance(meters, list) and all(isinstance(m, str) for m in meters)):
                    raise ValueError("meters must be a list of meter ids")
                entries[digest.lower()] = Party(name, role, frozenset(meters))
        except (ValueError, KeyError, TypeError) as exc:
            raise KeyError_(f"keys file {path} is malformed ({exc})") from None
        return cls(entries, subjects)

    def save(self, path: str | Path) -> None:
        doc = {
            "format": KEYS_FORMAT,
            "keys": [
                {"sha256": d, "party": p.name, "role": p.role, "meters": sorted(p.meters)}
                for d, p in sorted(self._by_digest.items(), key=lambda kv: (kv[1].name, kv[0]))
            ]
            + [
                {"tls_subject": s, "party": p.name, "role": p.role, "meters": sorted(p.meters)}
                for s, p in sorted(self._by_subject.items(), key=lambda kv: (kv[1].name, kv[0]))
            ],
        }
        atomic_write(path, (json.dumps(doc, indent=2) + "\n").encode())

    def add(self, party: str, role: str, meters: list[str] | None = None) -> str:
        """Create a key for ``party``; returns the key (only its digest is kept)."""
        if role not in ROLES:
            raise KeyError_(f"unknown role {role!r} (one of {', '.join(ROLES)})")
        key = new_key()
        self._by_digest[key_digest(key)] = Party(party, role, frozenset(meters or []))
        return key

    def add_subject(self, subject: str, party: str, role: str, meters: list[str] | None = None) -> None:
        """Let the client certificate with this RFC 4514 ``subject`` act as ``party``."""
        if role not in ROLES:
            raise KeyError_(f"unknown role {role!r} (one of {', '.join(ROLES)})")
        if not subject:
            raise KeyError_("empty certificate subject")
        self._by_subject[subject] = Party(party, role, frozenset(meters or []))

    def party(self, presented: str) -> Party | None:
        return self._by_digest.get(key_digest(presented))

    def party_of_subject(self, subject: str) -> Party | None:
        return self._by_subject.get(subject)
