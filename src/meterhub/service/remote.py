"""The demo's utility behind the HTTP service (``meterhub demo --server URL``).

The demo plays every party, so it also plays the installer: it enrols a key per party
in the service's keys file (:class:`~meterhub.service.keys.ApiKeys`; the service
re-reads the file when it changes) as each meter is installed, the way a utility
enrols a meter's credentials at installation. Meters deliver their days with their
own key (authorised for that meter only), suppliers their customers' bill statements,
the grid operator registers the meters. The demo's local utility store stays as it
is (settlement and forecasting read it); each verdict the service returns must agree
with the local one, or the demo stops.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from ..errors import MeterhubError
from ..model.formats.upload import DayUpload
from ..tariffs import SignedTariff, dump_tariff
from .keys import ApiKeys
from .push import PushClient, PushError

__all__ = ["RemoteError", "RemoteUtility"]


class RemoteError(MeterhubError, RuntimeError):
    """The service refused what the demo's own utility accepted, or disagreed with it."""


class RemoteUtility:
    def __init__(
        self, server: str, keys_path: str | Path, *, client: httpx.Client | None = None
    ) -> None:
        self.server, self.keys_path, self._http = server, Path(keys_path), client
        self._keys = ApiKeys.load(self.keys_path)
        self._clients: dict[str, PushClient] = {}
        self._grid = self._client(self._keys.add("demo-grid", "grid"))
        self._suppliers: dict[str, PushClient] = {}
        self._meters: dict[str, PushClient] = {}
        self._keys.save(self.keys_path)

    def _client(self, key: str) -> PushClient:
        return PushClient(self.server, key, client=self._http)

    def register_meter(
        self,
        meter_id: str,
        public_key: bytes,
        tz: str,
        interval_minutes: int,
        *,
        tariff: SignedTariff,
        supplier: str,
    ) -> None:
        if meter_id not in self._meters:
            self._meters[meter_id] = self._client(
                self._keys.add(f"meter-{meter_id}", "meter", [meter_id])
            )
        if supplier not in self._suppliers:
            self._suppliers[supplier] = self._client(self._keys.add(supplier, "supplier"))
        self._keys.save(self.keys_path)
        reg: dict[str, Any] = {
            "meter_id": meter_id,
            "public_key": public_key.hex(),
            "tz": tz,
            "interval_minutes": interval_minutes,
            "tariff": dump_tariff(tariff).decode(),
            "supplier": supplier,
        }
        try:
            self._grid.register_meter(reg)
        except PushError as exc:
            raise RemoteError(f"{self.server}: registering {meter_id}: {exc}") from None

    def deliver_day(self, upload: DayUpload) -> None:
        meter_id = upload.batch.batch.meter_id
        try:
            self._meters[meter_id].push_days([upload])
        except PushError as exc:
            raise RemoteError(
                f"{self.server}: day {upload.batch.batch.day} of {meter_id}: {exc}"
            ) from None

    @property
    def grid(self) -> PushClient:
        """The grid operator's client (outputs of the grid operator's domain, reference data)."""
        return self._grid

    def supplier(self, name: str) -> PushClient:
        """A supplier's client, its key enrolled on first use."""
        if name not in self._suppliers:
            self._suppliers[name] = self._client(self._keys.add(name, "supplier"))
            self._keys.save(self.keys_path)
        return self._suppliers[name]

    def check_statement(self, statement_json: str, supplier: str, local_ok: bool) -> None:
        try:
            v = self._suppliers[supplier].push_statement(statement_json)
        except PushError as exc:
            raise RemoteError(f"{self.server}: statement: {exc}") from None
        if v["verified"] != local_ok:
            raise RemoteError(
                f"{self.server}: verdict {v['verified']} disagrees with the local one ({local_ok})"
            )

    def close(self) -> None:
        if self._http is None:
            for c in [self._grid, *self._suppliers.values(), *self._meters.values()]:
                c.close()
