"""The import graph of ``framework/`` and ``modalities/``, read from the source (AST), and the
layer contract it must keep.

Every ``import`` counts: at module level, inside functions (lazy) and under ``TYPE_CHECKING``, since
each is a dependency of the code. The contract:

* the layers, bottom first (:data:`LAYERS`); a module imports only from its own layer or the ones
  below it, so the framework under the modalities never imports one (it reaches a modality through
  the plugin registry, :mod:`framework.core.plugins`), nor does the CLI (:data:`FORBIDDEN`);
* no modality imports another (one uses another's public API by name through the registry,
  :func:`framework.core.plugins.api`);
* no import circle (a strongly connected component of more than one module).

``python tools/import_graph.py`` prints the violations and circles (exit 1 if any) and
``--diagram`` the layer diagram of ``docs/architecture.md`` (mermaid), generated from the imports.
``tests/core/test_core_layers.py`` keeps both true.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("framework", "modalities")

#: The layers, bottom first: name → module prefixes (the longest matching prefix decides).
LAYERS: dict[str, tuple[str, ...]] = {
    "core": ("framework.core",),
    "guidance": ("framework.guidance",),
    "nn": ("framework.nn",),
    "generators": ("framework.generators",),
    "model": ("framework.model",),
    "evaluation": ("framework.evaluation",),
    "training": ("framework.training",),
    "toy": ("framework.toy",),
    "testing": ("framework.testing",),
    "modalities": ("modalities",),
    "pretrained": ("framework.pretrained",),
    "cli": ("framework.cli", "framework.pretrained.cli", "framework"),
}

#: Pairs of layers where the first may not import the second although it stands above it: the CLI
#: reaches a modality only through the plugin registry (:mod:`framework.core.plugins`).
FORBIDDEN = {("cli", "modalities")}

#: What each layer is for (the diagram's labels and the doc's table).
PURPOSE = {
    "core": "condition specs and batches, errors, atomic writes, plugin registry, encoders, files",
    "nn": "the shared backbone and adapters",
    "guidance": "the guidance algebra: expressions, branches, operators, the engine",
    "generators": "the four families' losses and samplers",
    "model": "GenerativeModel (sampling, no Lightning) and checkpoints",
    "evaluation": "judges, random requests, scoring, tables",
    "training": "the LightningModule, EMA, resume, distillation",
    "pretrained": "guidance on pretrained pipelines (diffusers, transformers); writes media with the "
                  "built-in modalities' writers",
    "toy": "the analytic toy demo",
    "testing": "the contract suite a plugin runs against itself",
    "modalities": "the built-in plugins: image, text, audio, motion (none imports another)",
    "cli": "the polyguide command line",
}


def layer_of(module: str) -> str | None:
    """The layer of a module (``None``: outside :data:`LAYERS`)."""
    best, name = -1, None
    for layer, prefixes in LAYERS.items():
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best:
                best, name = len(p), layer
    return name


def modules(root: Path = ROOT) -> dict[str, Path]:
    """Module name → file, for every ``.py`` under :data:`PACKAGES`."""
    found = {}
    for pkg in PACKAGES:
        for path in sorted((root / pkg).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _imported(node: ast.AST, module: str, is_package: bool, known: set[str]) -> list[str]:
    """The modules of :data:`PACKAGES` one import statement names."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
        if node.level:
            base = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
            prefix = ".".join(base + ([node.module] if node.module else []))
        else:
            prefix = node.module or ""
        names = [f"{prefix}.{a.name}" if f"{prefix}.{a.name}" in known else prefix for a in node.names]
    else:
        return []
    out = []
    for name in names:
        while name and name not in known:  # `import a.b.c` where c is a name: the module a.b
            name = name.rpartition(".")[0]
        if name:
            out.append(name)
    return out


def graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Module → the modules of :data:`PACKAGES` it imports (itself excluded)."""
    mods = modules(root)
    known = set(mods)
    edges: dict[str, set[str]] = {}
    for mod, path in mods.items():
        tree = ast.parse(path.read_text(), str(path))
        is_package = path.name == "__init__.py"
        edges[mod] = {t for node in ast.walk(tree) for t in _imported(node, mod, is_package, known)} - {mod}
    return edges


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The import circles: strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(max(10_000, sys.getrecursionlimit()))
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return sorted(out)


def _modality(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "modalities" and len(parts) > 1 else None


def violations(edges: dict[str, set[str]]) -> list[str]:
    """Every import that breaks the layer contract, one line each."""
    order = list(LAYERS)
    bad = []
    for src, targets in sorted(edges.items()):
        ls = layer_of(src)
        for dst in sorted(targets):
            ld = layer_of(dst)
            if ls is None or ld is None:
                bad.append(f"{src} → {dst}: outside the layers (add it to LAYERS)")
            elif (ls, ld) in FORBIDDEN:
                bad.append(f"{src} → {dst}: layer {ls} reaches {ld} only through the plugin registry")
            elif _modality(src) and _modality(dst) and _modality(src) != _modality(dst):
                bad.append(f"{src} → {dst}: a modality imports another modality")
            elif order.index(ld) > order.index(ls):
                bad.append(f"{src} → {dst}: layer {ls} imports the higher layer {ld}")
    return bad


def layer_edges(edges: dict[str, set[str]]) -> set[tuple[str, str]]:
    """The (importer, imported) pairs of distinct layers."""
    return {(layer_of(s), layer_of(d)) for s, ts in edges.items() for d in ts
            if layer_of(s) and layer_of(d) and layer_of(s) != layer_of(d)}


def diagram(edges: dict[str, set[str]]) -> str:
    """The layers and which imports which, as a mermaid flowchart (top layer first); only the
    direct edges are drawn (an edge implied by a path through other layers is left out)."""
    pairs = layer_edges(edges)
    reach: dict[str, set[str]] = defaultdict(set)
    for a, b in pairs:
        reach[a].add(b)
    changed = True
    while changed:
        changed = False
        for a in list(reach):
            new = set().union(*(reach[b] for b in reach[a] if b in reach)) - reach[a]
            if new:
                reach[a] |= new
                changed = True
    direct = {(a, b) for a, b in pairs
              if not any(b in reach[c] for c in reach[a] if c != b)}
    used = {x for p in pairs for x in p}
    lines = ["flowchart TD"]
    for layer in reversed(LAYERS):
        if layer in used:
            lines.append(f'    {layer}["{layer}<br/><small>{PURPOSE[layer]}</small>"]')
    lines += [f"    {a} --> {b}" for a, b in sorted(direct, key=lambda p: (-list(LAYERS).index(p[0]),
                                                                            -list(LAYERS).index(p[1])))]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--diagram", action="store_true", help="print the mermaid layer diagram")
    args = ap.parse_args(argv)
    edges = graph()
    if args.diagram:
        print(diagram(edges), end="")
        return 0
    bad, loops = violations(edges), circles(edges)
    for line in bad:
        print(line)
    for loop in loops:
        print("circle: " + " ↔ ".join(loop))
    print(f"{len(edges)} modules, {sum(map(len, edges.values()))} imports: {len(bad)} layer violations, "
          f"{len(loops)} circles")
    return 1 if bad or loops else 0


if __name__ == "__main__":
    raise SystemExit(main())
