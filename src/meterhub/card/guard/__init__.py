"""The privacy guard: the card service every release passes through (docs/privacy.md).

The guard is an applet instance at :data:`GUARD_AID`, associated with the ISD and
installed when the hub is provisioned (:func:`provision_guard`), never by a recipient's
security domain. It holds, in its own persistent namespace (JCRE ch. 7 transactions):

* the customer's P-256 public key (the customer keeps the private key on the host);
* the **pinned publisher keys**: the price-index publisher, the neutral reference-profile
  publisher, each recipient's tariff signers and, optionally, each recipient's own
  profile signer and aggregation-group signer, and each demand-response program
  operator's event-signing (VTN) key (role ``dr-event/<recipient>``), and who certifies
  the members of a recipient's aggregation groups (role ``member-cert/<recipient>``,
  a party other than the recipient, docs/fraud.md). A recipient's SD
  cannot change them: applets read them from here, and an install parameter naming
  another key is refused (``6982``);
* the map from recipient security domain to recipient name;
* the customer-signed **release policy** (:mod:`meterhub.policy`);
* each recipient's admitted **aggregation groups** (:class:`meterhub.model.formats.aggregation.GroupPolicy`
  over all of them, whichever applet of the recipient asks), and per group and day at
  most one masked release and one unmasking (recovery) answer, and per member which
  kind that answer gave (pairwise masks: missing; self-mask share: present), so a member is
  never answered both ways (double masking, docs/fraud.md);
* each recipient's **group registry** (:mod:`meterhub.model.group_registry`): the chain of
  signed blocks with every group of the feeder, accepted only while every member is
  certified by the pinned member certifier and no household is in the span of all of
  them, and the days released (no retroactive groups);
* every released statement and the **release log** (a hash chain, :mod:`meterhub.policy.log`),
  the coin tosses and the tariff changes. The budget spent is read from the log per
  calendar time (:func:`meterhub.policy.log.over_budget`: every cell a release's support
  touches, against every earlier release overlapping it), so a cycle change renews nothing;
  a ``dp-forecast`` release's epsilon, recorded in its log entry, is charged the same way.

Applets reach it through the shareable interface :class:`GuardPort` (JCRE §6.2.4). The
guard learns the client's recipient from the registry (the client's associated security
domain), never from the client. A release is two calls: :meth:`GuardPort.begin`
(entitlement, whole period, one release per period and kind, overlap; a re-ask returns
the stored statement byte for byte) and :meth:`GuardPort.commit` (budget; statement, log
entry, head and counters in one transaction; only then are the bytes handed out).

**Output gate.** On a card with a guard, response data of any application that is not a
security domain or the guard leaves the card only if the guard issued exactly those bytes
for that command (:func:`output_allowed`, called by the card runtime for the plain channel
and by the security domain for STORE DATA). An applet path that forgot the guard answers
``6F00`` and releases nothing.

Customer commands (plain channel, class ``80``): ``40`` GET POLICY, ``42`` SET POLICY (a
policy signed by the customer's key; version must increase; hard limits hold), ``44`` GET
LOG HEAD (``u32 count || 32-byte chain value``), ``46`` READ LOG ENTRY (``u32 seq``),
``48`` GET PINNED KEYS (JSON), ``4A`` GET RELEASE (``u32 seq`` → the released bytes),
``50`` ADD CONSENT and ``52`` REVOKE CONSENT (signed by the customer's key;
:mod:`meterhub.policy.consent`). An ``export`` release needs a valid consent instead of
the policy's entitlement; a revocation stops further exports (re-asks included) at once.

The package follows the sections of the guard: :mod:`.common` (the fixed names, the pinned
keys, the output gate), :mod:`.port` (the shareable interfaces applets call),
:mod:`.applet` (the applet: state, releases, customer commands) and :mod:`.provision`.
"""

from __future__ import annotations

from .applet import PrivacyGuard
from .common import GUARD_AID, GUARD_CLASS, Pinned, clear_issued, output_allowed
from .port import GuardPort, InstallPort
from .provision import pinned_points, provision_guard

__all__ = [
    "GUARD_AID",
    "GUARD_CLASS",
    "GuardPort",
    "InstallPort",
    "Pinned",
    "PrivacyGuard",
    "clear_issued",
    "output_allowed",
    "pinned_points",
    "provision_guard",
]
