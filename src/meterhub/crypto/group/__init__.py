"""The prime-order group secp256k1, wrapped for Pedersen commitments and proofs.

All curve arithmetic is delegated to libsecp256k1 through ``coincurve``; this
module only adds what coincurve refuses to represent and what commitments need:

* the identity point (the point at infinity), which coincurve cannot hold but
  which appears whenever terms cancel (a sum of commitments, ``0*P``);
* zero and out-of-range scalars, reduced mod the group order ``Q`` (a 0 Wh
  reading is common, so ``0*G`` must simply be the identity);
* a canonical, strict encoding (SEC 1 v2.0, section 2.3.3/2.3.4): 33-byte
  compressed points, and 65-byte uncompressed points for storage where the
  decoder's speed matters. The identity is encoded as all-zero bytes of the
  same width so that records keep a fixed size.

Curve parameters are from SEC 2 v2.0, section 2.4.1.

The package follows the module's sections: :mod:`.point` (constants, :class:`Point`,
scalars, the generators), :mod:`.msm` (multi-scalar multiplication, batch decoding) and
:mod:`.arrays` (:class:`PointArray` and Pippenger's bucket method).
"""

from __future__ import annotations

from .arrays import PointArray
from .msm import msm, msm_encoded, msm_fixed_plan, naive_msm, uncompress_many
from .point import (
    H_DST,
    G,
    H,
    P,
    Point,
    PointDecodeError,
    Q,
    base_mul,
    hash_to_point,
    random_scalar,
    scalar_from_bytes,
    scalar_to_bytes,
)

__all__ = [
    "Q",
    "P",
    "Point",
    "G",
    "H",
    "H_DST",
    "PointDecodeError",
    "random_scalar",
    "scalar_to_bytes",
    "scalar_from_bytes",
    "hash_to_point",
    "base_mul",
    "msm",
    "naive_msm",
    "msm_encoded",
    "msm_fixed_plan",
    "uncompress_many",
    "PointArray",
]
