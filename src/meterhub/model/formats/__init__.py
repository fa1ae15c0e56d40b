"""One home per wire format: each kind is one class or codec, used by producer and consumer.

==========================  ===============================================  ==========================
module                      what                                             produced by → read by
==========================  ===============================================  ==========================
:mod:`.units`               36-byte opening unit, 33-byte commitment,        meter, hub, applets →
                            41-byte commitment record, 4-byte day            hub, applets, utility
:mod:`.sealed`              sealed openings (AES-128-GCM home link)          meter → hub, readings applet
:mod:`.statements`          bill statements v1, v2 (+ proof bundle), v3      hub, billing applet → utility
:mod:`.contexts`            the proof contexts of a bill's proofs            prover and verifier
:mod:`.settlement`          settlement statement                             settlement applet → utility
:mod:`.scores`              profile scores (+ their proof context)           profiling applet → utility
:mod:`.samples`             sample release                                   profiling applet → utility
:mod:`.dp_forecast`         DP forecast release (meterhub-dp-forecast/1)     profiling applet → utility
:mod:`.upload`              day upload: signed batch + commitment records    meter → utility
:mod:`.aggregation`         private aggregation (groups, masked releases,    aggregation applet, grid
                            recoveries, feeder readings) and group rules     operator → each other
:mod:`.greenbutton`         Green Button (ESPI) export with openings         export applet → recipient
==========================  ===============================================  ==========================

Strict JSON is :mod:`meterhub.model.strictjson`; ``host:port`` is
:mod:`meterhub.protocols.endpoint` (the protocol layer, so that transports below
the model may use it). The field-by-field layouts are in docs/formats.md.
Import the submodules directly: this package imports nothing, so that the low
layers (``meter.device`` needs only :mod:`.units`) do not load the statements.
"""
