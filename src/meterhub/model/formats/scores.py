"""Profile scores (docs/formats.md, "Profile scores").

The profiling applet (:mod:`meterhub.applets.profiling`) releases for a period the
energy, the committed and proven sum of squares and, per reference load profile,
the score ``s_w = sum w_h M_h``, each with its opening; the forecasting party
(:mod:`meterhub.utility.forecasting`) verifies them. Both use :class:`ProfileScores`
and the proof context :func:`scores_context`.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import date

from ...crypto.group import Q
from ...crypto.transcript import ProofContext
from .. import strictjson
from ..errors import FormatError

__all__ = ["SCORES_FORMAT", "ProfileScores", "ScoreEntry", "hex_scalar", "nonneg_int", "scores_context"]

SCORES_FORMAT = "meterhub-profile-scores/1"


def scores_context(meter_id: str, period_from: str, period_to: str, point_minutes: int) -> ProofContext:
    """The proof context that binds the sum-of-squares proof to meter, period and resolution."""
    return ProofContext(
        meter_id=meter_id,
        period=f"{period_from}/{period_to}",
        tariff_id="profile-scores",
        tariff_version=point_minutes,
        statement=b"meterhub/v1/profile-scores/sum-of-squares",
    )


def hex_scalar(where: str, v: object) -> int:
    x = int.from_bytes(strictjson.hex_bytes(v, where, 32), "big")
    if x >= Q:
        raise FormatError(f"{where}: not below the group order")
    return x


def nonneg_int(where: str, v: object) -> int:
    """A non-negative JSON integer (docs/verification.md V04)."""
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        raise FormatError(f"{where}: expected a non-negative integer")
    return v


@dataclass(frozen=True)
class ScoreEntry:
    series_id: str
    version: int
    digest: bytes
    score: int
    blinding: int


@dataclass(frozen=True)
class ProfileScores:
    """The profiling applet's score statement (docs/formats.md, "Profile scores")."""

    meter_id: str
    period_from: date
    period_to: date
    first_index: int
    count: int
    point_minutes: int
    applet_aid: str
    code_hash: str
    energy_wh: int
    energy_blinding: int
    squares: int
    squares_blinding: int
    squares_proof: bytes
    scores: tuple[ScoreEntry, ...]

    def to_json(self) -> str:
        """The canonical JSON the profiling applet releases (sorted keys, no spaces)."""
        return json.dumps(
            {
                "format": SCORES_FORMAT,
                "meter_id": self.meter_id,
                "period_from": self.period_from.isoformat(),
                "period_to": self.period_to.isoformat(),
                "first_index": self.first_index,
                "count": self.count,
                "point_minutes": self.point_minutes,
                "applet_aid": self.applet_aid,
                "code_hash": self.code_hash,
                "energy_wh": self.energy_wh,
                "energy_blinding": f"{self.energy_blinding:064x}",
                "squares": self.squares,
                "squares_blinding": f"{self.squares_blinding:064x}",
                "squares_proof": base64.b64encode(self.squares_proof).decode(),
                "scores": [
                    {
                        "series_id": e.series_id,
                        "version": e.version,
                        "digest": e.digest.hex(),
                        "score": e.score,
                        "blinding": f"{e.blinding:064x}",
                    }
                    for e in self.scores
                ],
            },
            sort_keys=True,
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, raw: bytes | str) -> ProfileScores:
        """Strict parse; raises ``ValueError``."""
        try:
            d = strictjson.loads(raw, "profile scores")  # V03
            if not isinstance(d, dict) or d.get("format") != SCORES_FORMAT:
                raise ValueError("not a profile score statement (format)")
            want = {"format", "meter_id", "period_from", "period_to", "first_index", "count", "point_minutes",
                    "applet_aid", "code_hash", "energy_wh", "energy_blinding", "squares", "squares_blinding",
                    "squares_proof", "scores"}
            if set(d) != want:
                raise ValueError("profile scores: wrong set of fields")
            if not isinstance(d["scores"], list) or not d["scores"]:
                raise ValueError("profile scores: scores must be a non-empty list")
            entries = []
            for k, e in enumerate(d["scores"]):
                if not isinstance(e, dict) or set(e) != {"series_id", "version", "digest", "score", "blinding"}:
                    raise ValueError(f"scores[{k}]: wrong fields")
                dig = strictjson.hex_bytes(e["digest"], f"scores[{k}].digest")
                if len(dig) != 32 or not isinstance(e["series_id"], str):
                    raise ValueError(f"scores[{k}]: bad digest or id")
                entries.append(ScoreEntry(e["series_id"], nonneg_int("version", e["version"]), dig,
                                          nonneg_int("score", e["score"]), hex_scalar("blinding", e["blinding"])))
            for f in ("meter_id", "applet_aid", "code_hash", "squares_proof"):
                if not isinstance(d[f], str):
                    raise ValueError(f"profile scores: {f} must be a string")
            return cls(
                d["meter_id"], strictjson.iso_date(d["period_from"], "period_from"), strictjson.iso_date(d["period_to"], "period_to"),
                nonneg_int("first_index", d["first_index"]), nonneg_int("count", d["count"]),
                nonneg_int("point_minutes", d["point_minutes"]), d["applet_aid"], d["code_hash"],
                nonneg_int("energy_wh", d["energy_wh"]), hex_scalar("energy_blinding", d["energy_blinding"]),
                nonneg_int("squares", d["squares"]), hex_scalar("squares_blinding", d["squares_blinding"]),
                base64.b64decode(d["squares_proof"], validate=True), tuple(entries),
            )
        except (TypeError, AttributeError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"profile scores: malformed ({str(exc)[:60]})") from None
        except strictjson.StrictJSONError:
            raise
        except ValueError as exc:
            raise ValueError(str(exc)) from None
