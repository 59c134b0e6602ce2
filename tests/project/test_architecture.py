"""The package's shape: the import graph has no cycles, no backend imports the
facade or the server, and every exception the package defines lives in
``_errors`` (read from the source with ``ast``; nothing is imported)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "pykka_registry"
# Exceptions defined outside _errors on purpose: none.
OUTSIDE_ERRORS: dict[str, set[str]] = {}


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _imports(name: str, path: Path, known: set[str], top_level: bool) -> set[str]:
    """The package modules ``name`` imports (``top_level``: only those run at
    import time, not inside functions)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes: list[ast.AST] = list(ast.walk(tree))
    if top_level:  # imports run at import time (also in top-level try blocks)
        nodes = [n for stmt in tree.body if not _deferred(stmt) for n in ast.walk(stmt)]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in nodes:
        targets = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # ``from pkg import mod`` is an edge to ``mod``; ``from mod import
            # name`` one to ``mod``.
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                       for alias in node.names]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def _deferred(stmt: ast.stmt) -> bool:
    """A top-level statement whose imports do not run at import time: a
    function or class body, or ``if TYPE_CHECKING:``."""
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return True
    return isinstance(stmt, ast.If) and "TYPE_CHECKING" in ast.unparse(stmt.test)


def _graph(top_level: bool) -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imports(name, path, known, top_level) for name, path in modules.items()}


def _parents(name: str) -> set[str]:
    """The packages whose ``__init__`` runs before ``name`` (not edges of a cycle)."""
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


def test_the_import_graph_has_no_cycles() -> None:
    graph = _graph(top_level=True)
    # An import of a package's own parent is not a cycle (Python runs the
    # parent's __init__ first); everything else must form a DAG.
    edges = {m: {t for t in targets if t not in _parents(m)} for m, targets in graph.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        stack.append(module)
        for target in sorted(edges[module]):
            if state.get(target) == 1:
                cycle = [*stack[stack.index(target):], target]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        stack.pop()
        state[module] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module)


def test_no_backend_imports_the_facade_or_the_server() -> None:
    forbidden = {"pykka_registry._registry", "pykka_registry._server", "pykka_registry"}
    graph = _graph(top_level=False)  # not even inside a function
    for module, targets in graph.items():
        if module.startswith("pykka_registry.backends"):
            bad = targets & forbidden
            assert not bad, f"{module} imports {sorted(bad)}"


def test_the_checker_sees_imports() -> None:
    # The checks above are only as good as the graph: it must see real edges.
    graph = _graph(top_level=True)
    assert "pykka_registry.backends.redis._schema" in graph["pykka_registry.backends.redis"]
    assert "pykka_registry._errors" in graph["pykka_registry._remote"]
    assert "pykka_registry.backends.base" in graph["pykka_registry.backends.memory"]


def test_every_exception_is_defined_in_errors() -> None:
    for name, path in _modules().items():
        if name == "pykka_registry._errors" or f"{name}.".startswith("pykka_registry.testing."):
            continue  # (testing's exceptions are test doubles, not errors)
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.ClassDef) or node.name.startswith("_"):
                continue  # (a private exception never reaches a caller)
            bases = {ast.unparse(base) for base in node.bases}
            if node.name.endswith(("Error", "Exceeded")) or \
                    any(b.endswith(("Error", "Exception")) for b in bases):
                assert node.name in OUTSIDE_ERRORS.get(name, set()), \
                    f"{name} defines the exception {node.name}: move it to _errors"


def test_remote_errors_are_registry_errors_and_keep_their_old_homes() -> None:
    from pykka_registry import _errors, _remote
    from pykka_registry.backends import redis as redis_backend

    for cls in (_errors.RemoteActorError, _errors.RemoteTimeoutError,
                _errors.InvalidSecretError, _errors.NotHeldHereError):
        assert issubclass(cls, _errors.RegistryError)
    assert issubclass(_errors.RemoteTimeoutError, TimeoutError)
    assert issubclass(_errors.InvalidSecretError, ValueError)
    assert issubclass(_errors.NotHeldHereError, LookupError)
    assert _remote.RemoteActorError is _errors.RemoteActorError
    assert _remote.RemoteTimeoutError is _errors.RemoteTimeoutError
    assert _remote.InvalidSecretError is _errors.InvalidSecretError
    assert redis_backend.NotHeldHereError is _errors.NotHeldHereError
    assert redis_backend.UnsignedMessagesWarning is _errors.UnsignedMessagesWarning
    assert redis_backend.InvalidSecretError is _errors.InvalidSecretError


def test_supervision_errors_are_registry_errors_and_keep_their_old_homes() -> None:
    from pykka_registry import _errors, _supervisor

    for name in ("SupervisorError", "RestartIntensityExceeded", "ChildRetired"):
        cls = getattr(_errors, name)
        assert issubclass(cls, _errors.RegistryError)
        assert getattr(_supervisor, name) is cls
    assert issubclass(_errors.RestartIntensityExceeded, _errors.SupervisorError)


def test_a_pykka_actor_ref_is_actor_ref_like() -> None:
    # (mypy checks RemoteActorRef too, statically, at the end of _types.)
    import pykka

    from pykka_registry import ActorRefLike

    ref = pykka.ThreadingActor.start()
    try:
        assert isinstance(ref, ActorRefLike)
        assert not isinstance(object(), ActorRefLike)
    finally:
        ref.stop()
