"""The customer's dashboard, served by the hub's host on localhost (docs/dashboards.md).

Everything here stays in the home: the consumption charts show the openings the hub
holds at full resolution, read from ``hub.sqlite``; the release log, the policy, the
budgets and the consents come from the hub's card through the privacy guard's customer
commands (:class:`meterhub.hub.secure_element.GuardClient`), exactly as ``meterhub hub
releases`` and ``meterhub hub consent`` read and change them. Granting and revoking a
consent signs it with the customer's key (``ID.sqlite.customer.pem`` next to the card)
and goes through the guard's ADD/REVOKE CONSENT, so a revoked consent stops exports at
once (docs/privacy.md, "Consents").

Access: the server listens on a loopback address unless started with
``--allow-remote``; requests whose ``Host`` is not a loopback name are refused (a web
page elsewhere cannot reach it by DNS rebinding); state-changing requests are POSTs
carrying a CSRF token (:class:`meterhub.web.common.CsrfTokens`).

The package follows the module's sections: :mod:`.household` (opening a household's
data directory), :mod:`.data` (what each page shows) and :mod:`.app` (the routes).
"""

from __future__ import annotations

from .app import create_customer_app
from .household import LOOPBACK_HOSTS, DashboardError, Household, open_household

__all__ = ["DashboardError", "Household", "create_customer_app", "open_household", "LOOPBACK_HOSTS"]
