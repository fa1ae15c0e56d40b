"""meterhub: privacy-preserving smart metering.

Parties live in their own packages (``meter``, ``hub``/``card``/``applets``,
``utility``); protocols in ``protocols``; cryptography in ``crypto``.
"""

__version__ = "0.1.0"
