"""The plugin commands: ``polyguide modalities`` (what is installed) and ``polyguide new-modality``
(a working plugin to start from, :mod:`framework.scaffold`)."""

from __future__ import annotations

import argparse
import inspect

from framework.core import plugins

__all__ = ["encoder_summary"]


def encoder_summary(fn) -> str:
    """The first line of an encoder's docstring, without reST quotes (``"—"`` without one)."""
    doc = inspect.getdoc(fn) or ""
    return doc.strip().splitlines()[0].replace("``", "") if doc.strip() else "—"


def _modalities(args: argparse.Namespace) -> int:
    """Each installed plugin: representations, data modules, conditions, encoders (by the name a
    condition spec uses) and the absolute paths of its shipped recipes."""
    names = plugins.available()
    if not names:
        print(f"no modality plugins installed (entry-point group {plugins.GROUP!r})")
        return 0
    for name in names:
        try:
            m = plugins.get(name)
        except plugins.PluginError as e:
            print(f"{name}: BROKEN — {e}")
            continue
        print(f"{name}: {m.description}")
        print(f"  representations: {', '.join(m.representations) or '—'}")
        data = ", ".join(f"{k} ({v.__module__}.{v.__name__})" for k, v in m.datamodules.items())
        print(f"  data modules:    {data or '—'}")
        for cname, desc in m.conditions.items():
            print(f"  condition {cname:<10} {desc}")
        for ename, fn in m.encoders.items():
            print(f"  encoder   {name + '/' + ename:<16} {encoder_summary(fn)}")
        for r in m.recipes():
            print(f"  recipe    {r.resolve()}")
    return 0


def _new_modality(args: argparse.Namespace) -> int:
    """Write the plugin project and say how to install, test and train it."""
    from framework.scaffold import new_modality

    if args.name in plugins.available():
        from framework.scaffold import ScaffoldError

        raise ScaffoldError(f"a modality named {args.name!r} is already installed; choose another name")
    dest = new_modality(args.name, args.out)
    print(f"wrote {dest}")
    print(f"  pip install -e {dest}            # registers the entry point {args.name!r}")
    print(f"  python -m pytest {dest / 'tests'}   # the plugin contract + fit/sample/eval")
    recipe = dest / f"polyguide_{args.name}" / "recipes" / f"{args.name}_flow.yaml"
    print(f"  polyguide fit --config {recipe}")
    return 0
