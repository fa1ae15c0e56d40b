"""The utility re-verifies what a data directory holds (``meterhub utility settle``,
``forecast``, ``fraud``, ``dr`` and the utility dashboard): every stored output is checked
again against the meters' signed commitments and the signed inputs stored with it, and the
figures are recomputed from the verified outputs only.

* :mod:`.settlement` - settlement statements, profile scores and samples;
* :mod:`.fraud` - feeder-days of private aggregation, group registries, suspect scores,
  and the grid operator's store of them (``fraud.sqlite``);
* :mod:`.dr` - demand-response releases, and the grid operator's store of them
  (``dr.sqlite``).
"""
