"""The command line: argument checks, the sub-commands, the demo and the LightningCLI ``fit`` entry.

It is the top layer (``docs/architecture.md``): no other layer imports it, and it reaches a modality
only through the plugin registry. ``framework.cli.main:main`` is the ``polyguide`` console script.
"""
