"""The plugin authors' kit, in parts (re-exported whole by :mod:`kdsuite.testing`, the name to import):

- :mod:`kdsuite.kit.fixtures`: build a plugin around tiny zoo models, train (and cache) tiny digits
  teachers, build a contract run's parts without training and step them;
- :mod:`kdsuite.kit.probes`: what the checks measure with — which loss terms distil, ``trainer.optimize``
  spied on, the stage that distils, the discrepancy to the teacher;
- :mod:`kdsuite.kit.checks`: the contract's checks, one function each;
- :mod:`kdsuite.kit.runner`: the checks in order, run one after another and reported
  (``kdsuite check-method NAME``).
"""
