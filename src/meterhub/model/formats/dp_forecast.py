"""The DP forecast release (``meterhub-dp-forecast/1``): the profiling applet's
differentially private answer to message ``22`` (docs/privacy.md, "The DP forecast
option"; the noise is :mod:`meterhub.model.dp`).

One JSON object with exactly the fields of :attr:`DpForecastRelease.FIELDS`, keys sorted,
no spaces. Written by the profiling applet (:meth:`DpForecastRelease.to_json`), read by
the forecaster (:meth:`DpForecastRelease.from_json`, strict).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date

from .. import strictjson
from .scores import nonneg_int as _int

__all__ = ["DP_FORECAST_FORMAT", "DpForecastRelease"]

DP_FORECAST_FORMAT = "meterhub-dp-forecast/1"


@dataclass(frozen=True)
class DpForecastRelease:
    """The profiling applet's differentially private forecast release (message ``22``;
    :mod:`meterhub.model.dp`, docs/privacy.md "DP option").

    Its figures are noisy on purpose, so nothing in it can be checked against the
    meter's commitments: the forecaster checks the format, the applet's code hash
    and that the class is one of the profiles it asked for
    (:func:`meterhub.utility.forecasting.verify_dp_release`). ``energy_wh`` may be
    negative (noise); :func:`meterhub.utility.forecasting.dp_forecast_next` clamps the
    scale at zero."""

    meter_id: str
    period_from: date
    period_to: date
    hours: int
    energy_wh: int
    klass: str
    profiles: tuple[str, ...]
    versions: dict[str, int]
    epsilon_milli: int
    clip_wh: int
    unit_hours: int
    applet_aid: str
    code_hash: str

    FIELDS = frozenset({"format", "meter_id", "period_from", "period_to", "hours", "energy_wh", "class", "profiles",
                        "versions", "epsilon_milli", "clip_wh", "unit_hours", "applet_aid", "code_hash"})

    @classmethod
    def from_json(cls, raw: bytes | str) -> DpForecastRelease:
        """Strict parse; raises ``ValueError`` naming the fault."""
        try:
            d = strictjson.loads(raw, "dp forecast")
            if not isinstance(d, dict) or d.get("format") != DP_FORECAST_FORMAT:
                raise ValueError("not a DP forecast release (format)")
            if set(d) != cls.FIELDS:
                raise ValueError("dp forecast: wrong set of fields")
            if not all(isinstance(d[f], str) for f in ("meter_id", "class", "applet_aid", "code_hash")):
                raise ValueError("dp forecast: meter_id, class, applet_aid and code_hash must be strings")
            e = d["energy_wh"]
            if not isinstance(e, int) or isinstance(e, bool):
                raise ValueError("dp forecast: energy_wh must be an integer")
            profiles = d["profiles"]
            if not isinstance(profiles, list) or not profiles or not all(isinstance(p, str) for p in profiles):
                raise ValueError("dp forecast: profiles must be a non-empty list of ids")
            if d["class"] not in profiles:
                raise ValueError("dp forecast: the class is not one of the profiles")
            vers = d["versions"]
            if not isinstance(vers, dict) or set(vers) != set(profiles):
                raise ValueError("dp forecast: one version per profile")
            return cls(
                d["meter_id"], strictjson.iso_date(d["period_from"], "period_from"),
                strictjson.iso_date(d["period_to"], "period_to"), _int("hours", d["hours"]), e, d["class"],
                tuple(profiles), {k: _int("version", v) for k, v in vers.items()},
                _int("epsilon_milli", d["epsilon_milli"]), _int("clip_wh", d["clip_wh"]),
                _int("unit_hours", d["unit_hours"]), d["applet_aid"], d["code_hash"],
            )
        except (TypeError, AttributeError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"dp forecast: malformed ({str(exc)[:60]})") from None

    def to_dict(self) -> dict[str, object]:
        return {
            "format": DP_FORECAST_FORMAT, "meter_id": self.meter_id, "period_from": self.period_from.isoformat(),
            "period_to": self.period_to.isoformat(), "hours": self.hours, "energy_wh": self.energy_wh,
            "class": self.klass, "profiles": list(self.profiles), "versions": dict(self.versions),
            "epsilon_milli": self.epsilon_milli, "clip_wh": self.clip_wh, "unit_hours": self.unit_hours,
            "applet_aid": self.applet_aid, "code_hash": self.code_hash,
        }

    def to_json(self) -> str:
        """Sorted keys, no spaces: the bytes the profiling applet releases."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
