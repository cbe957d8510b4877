"""The model and checkpoint API: :class:`~framework.model.generative.GenerativeModel` (a conditional
generator of any family, for sampling; no Lightning) and reading, checking, rebuilding and exporting
checkpoints (:mod:`framework.model.checkpoints`, which never runs code from a file).

It stands above the generators, the networks and the guidance algebra, and below evaluation,
training (whose ``GenerativeModule`` is this model plus Lightning) and the CLI.
"""
