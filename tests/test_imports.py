"""No import cycles among mailq's modules, read from the source (no import is run).

Function-level imports count too: a lazy import is how a cycle is usually hidden,
and it still means the two modules cannot be understood (or tested) apart.
"""
import ast
import functools

from support.procs import REPO_ROOT

PACKAGE = REPO_ROOT / 'mailq'

# Cycles allowed for now, each a strongly connected component as a sorted tuple of
# module names, with the reason. None are known: when this was written the only cycle
# was inside mailq/web (app.py <-> the route modules) and it is gone. The test fails
# on an entry that no longer matches, so the list cannot go stale.
KNOWN_CYCLES = set()


def module_name(path):
    parts = list(path.relative_to(REPO_ROOT).with_suffix('').parts)
    if parts[-1] == '__init__':
        parts.pop()
    return '.'.join(parts)


def modules():
    """{module name: path} of every mailq module."""
    return {module_name(path): path for path in sorted(PACKAGE.rglob('*.py'))}


def _base(module, path, level, target):
    """The absolute module a (possibly relative) `from ... import` names."""
    if not level:
        return target or ''
    package = module.split('.') if path.name == '__init__.py' else module.split('.')[:-1]
    package = package[:len(package) - level + 1]
    return '.'.join(package + ([target] if target else []))


def imports_of(module, path, known):
    """The mailq modules that `module` imports, anywhere in its source."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _base(module, path, node.level, node.module)
            # `from pkg import sub` imports the submodule; `from mod import name`, the module
            names = [f'{base}.{a.name}' if f'{base}.{a.name}' in known else base
                     for a in node.names]
        else:
            continue
        found.update(name for name in names if name in known and name != module)
    return found


@functools.cache          # read once for all the tests below
def graph():
    known = modules()
    return {name: imports_of(name, path, known) for name, path in known.items()}


def cycles(edges):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(edges.get(node, ())):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(tuple(sorted(component)))
    for node in sorted(edges):
        if node not in index:
            visit(node)
    return set(found)


def test_the_checker_finds_a_cycle():
    """The checker itself can fail: a made-up cycle a -> b -> c -> a is found."""
    assert cycles({'a': {'b'}, 'b': {'c'}, 'c': {'a'}, 'd': {'a'}}) == {('a', 'b', 'c')}


def test_the_checker_reads_relative_imports():
    edges = graph()
    assert 'mailq.errors' in edges['mailq.web.api']
    assert 'mailq.web.responses' in edges['mailq.web.api']
    assert 'mailq.store.states' in edges['mailq.web.dashboard']


def test_no_import_cycle_in_mailq_web():
    web = {name: deps for name, deps in graph().items() if name.startswith('mailq.web')}
    assert cycles(web) == set()
    assert not any(name.startswith('mailq.web') for cycle in cycles(graph()) for name in cycle)


def test_no_import_cycle_among_mailq_modules():
    assert cycles(graph()) == KNOWN_CYCLES


def test_responses_depend_on_nothing_of_mailq():
    assert graph()['mailq.web.responses'] == set()
