"""The shared model layer: what every party agrees on about data crossing a boundary.

It sits above the crypto and protocol layers and below the card, applets and
parties (docs/architecture.md, "Layers": crypto < protocols < shared model < card < applets <
parties). It holds the one strict JSON reader every boundary format uses
(:mod:`meterhub.model.strictjson`) and the error type for malformed exchange
data (:class:`meterhub.model.errors.FormatError`). Nothing here imports a party.
"""
