"""The shipped recipes and checkpoints, installed as the package ``polyguide_recipes``
(``setup.py`` maps it onto this folder; ``framework/core/shipped.py`` finds it)."""
