"""The engine: a reusable numpy library for gradients through time.

One backward recursion (``backprop``) driven by estimators' plans (``estimators``,
``schedules``) over cells (``cells``) inside a ``model`` with its ``losses``;
``initialization`` and ``costs`` (what a plan cut, stored and computed) complete it.
Nothing here imports ``bptt.study`` (tests/test_layers.py); see docs/design.md.
"""
