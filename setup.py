"""Package discovery that ``pyproject.toml`` cannot express: the repository's ``recipes/`` folder
(recipe YAMLs and their checkpoints) ships as the package ``polyguide_recipes``, so an installed
polyguide lists and loads them (``framework/core/shipped.py``). Which of its files ship (package
data), and everything else, is in pyproject.toml."""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).resolve().parent
RECIPES = "recipes"

# every folder under recipes/ becomes a sub-package, so its data files install with it
folders = sorted(p.relative_to(HERE / RECIPES) for p in (HERE / RECIPES).rglob("*")
                 if p.is_dir() and p.name != "__pycache__" and not p.name.startswith("."))
recipe_packages = ["polyguide_recipes", *("polyguide_recipes." + ".".join(f.parts) for f in folders)]

setup(
    packages=[*find_packages(include=["framework*", "modalities*"]), *recipe_packages],
    package_dir={"polyguide_recipes": RECIPES},
)
