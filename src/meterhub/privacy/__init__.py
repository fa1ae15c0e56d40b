"""Measured privacy (issue 12): attacks on raw readings against what each recipient receives.

* :mod:`meterhub.privacy.releases` - the release kinds (bill, settlement, profile
  scores, samples), their recipients and the features derivable from them, computed
  with the functions the hub and its applets use;
* :mod:`meterhub.privacy.features` - occupancy (Kleiminger et al.) and CLASS trait
  (Beckel et al.) features;
* :mod:`meterhub.privacy.attacks` - occupancy, NILM (Hart, combinatorial
  optimisation, supervised) and trait classifiers, Wilson and bootstrap intervals;
* :mod:`meterhub.privacy.evaluate` - ``meterhub privacy evaluate``.

An analysis layer beside the demo: it imports the meter's simulator, the hub's
billing and the utility's statistics, and nothing imports it. Needs the optional
extra ``privacy`` (scikit-learn, matplotlib). See docs/privacy-evaluation.md.
"""
