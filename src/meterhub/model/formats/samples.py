"""The sample release (docs/formats.md, "Sample release").

After the coin toss of :mod:`meterhub.crypto.sampling`, the profiling applet
(:mod:`meterhub.applets.profiling`) opens ``k`` readings at indices derived from
both parties' nonces; the recipient (:mod:`meterhub.utility.forecasting`) checks
them. Both use :class:`SampleRelease`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date

from ...crypto.sampling import Sample
from .. import strictjson
from .scores import hex_scalar, nonneg_int

__all__ = ["SAMPLES_FORMAT", "SampleRelease"]

SAMPLES_FORMAT = "meterhub-samples/1"

_SAMPLE_FIELDS = {
    "format", "meter_id", "period_from", "period_to", "first_index", "count", "k", "commitment",
    "utility_nonce", "hub_nonce", "applet_aid", "code_hash", "samples",
}


@dataclass(frozen=True)
class SampleRelease:
    """The profiling applet's sample release (docs/formats.md, "Sample release")."""

    meter_id: str
    period_from: date
    period_to: date
    first_index: int
    count: int
    k: int
    commitment: bytes
    utility_nonce: bytes
    hub_nonce: bytes
    code_hash: str
    samples: tuple[Sample, ...]
    applet_aid: str = ""

    def to_json(self) -> str:
        """The canonical JSON the profiling applet releases (sorted keys, no spaces)."""
        return json.dumps(
            {
                "format": SAMPLES_FORMAT,
                "meter_id": self.meter_id,
                "period_from": self.period_from.isoformat(),
                "period_to": self.period_to.isoformat(),
                "first_index": self.first_index,
                "count": self.count,
                "k": self.k,
                "commitment": self.commitment.hex(),
                "utility_nonce": self.utility_nonce.hex(),
                "hub_nonce": self.hub_nonce.hex(),
                "applet_aid": self.applet_aid,
                "code_hash": self.code_hash,
                "samples": [[s.index, s.m, f"{s.r:064x}"] for s in self.samples],
            },
            sort_keys=True,
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, raw: bytes | str) -> SampleRelease:
        try:
            d = strictjson.loads(raw, "sample release")  # V03
            if not isinstance(d, dict) or d.get("format") != SAMPLES_FORMAT:
                raise ValueError("not a sample release (format)")
            if set(d) != _SAMPLE_FIELDS:
                raise ValueError("sample release: wrong set of fields")
            if not all(isinstance(d[f], str) for f in ("meter_id", "applet_aid", "code_hash")):
                raise ValueError("sample release: meter_id, applet_aid and code_hash must be strings")
            if not isinstance(d["samples"], list):
                raise ValueError("sample release: samples must be a list")
            samples = []
            for s in d["samples"]:
                if not isinstance(s, list) or len(s) != 3:
                    raise ValueError("a sample is [index, m, r]")
                samples.append(Sample(nonneg_int("index", s[0]), nonneg_int("m", s[1]), hex_scalar("r", s[2])))
            return cls(
                d["meter_id"], strictjson.iso_date(d["period_from"], "period_from"), strictjson.iso_date(d["period_to"], "period_to"),
                nonneg_int("first_index", d["first_index"]), nonneg_int("count", d["count"]), nonneg_int("k", d["k"]),
                strictjson.hex_bytes(d["commitment"], "commitment"), strictjson.hex_bytes(d["utility_nonce"], "utility_nonce"),
                strictjson.hex_bytes(d["hub_nonce"], "hub_nonce"),
                d["code_hash"], tuple(samples), d["applet_aid"],
            )
        except (KeyError, TypeError, AttributeError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"sample release: malformed ({str(exc)[:60]})") from None
