"""The package's layout is its architecture: no module imports another in a cycle.

The direction of imports between layers is import-linter's job (`make test` runs
`lint-imports` on the contracts in pyproject.toml); this checks the claim
docs/development.md makes on top of it, on the same import graph (grimp's, lazy imports included).
"""

from __future__ import annotations

import pytest

grimp = pytest.importorskip("grimp")


def _cycles(graph) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iteratively)."""
    adj = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    index, low, stack, on_stack, out, counter = {}, {}, [], set(), [], [0]
    for root in sorted(adj):
        if root in index:
            continue
        work = [(root, iter(adj[root]))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(adj[child])))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    out.append(sorted(component))
    return out


def test_no_module_of_mlrepro_imports_another_in_a_cycle():
    graph = grimp.build_graph("mlrepro")
    assert len(graph.modules) > 50
    assert _cycles(graph) == []


def test_the_cycle_check_finds_a_cycle_when_there_is_one():
    graph = grimp.build_graph("mlrepro")
    graph.add_import(importer="mlrepro.store.base", imported="mlrepro.core.run")
    assert any("mlrepro.store.base" in c and "mlrepro.core.run" in c for c in _cycles(graph))
