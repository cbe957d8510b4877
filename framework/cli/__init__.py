"""The command line: argument checks, the sub-commands, the demo and the LightningCLI ``fit`` entry.

Nothing here is imported by the library itself; ``framework.cli.main:main`` is the ``polyguide``
console script.
"""
