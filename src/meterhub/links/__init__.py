"""The meter-hub home link's plumbing, shared by both ends (docs/dlms.md, docs/sml.md).

* :mod:`.dlms` - the DLMS security suite 0 key schedule, system titles and the invocation
  counters that survive restarts (kept in the owning party's SQLite file);
* :mod:`.sml` - SML push over mutually authenticated TLS 1.3, keyed by the home-link key.

Both the meter and the hub use them, so they sit under the parties, beside
:mod:`meterhub.storage`, and neither party imports the other's package.
"""
