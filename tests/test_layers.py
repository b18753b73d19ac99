"""The house rules of `service/`, read from the source with the standard library's `ast`.

Rooms, from the bottom up (docs/architecture.md explains each one):

    base < store < scoring < rights < api, web < the app factory (app.py, wsgi.py) < cli

A module may import its own room and any room below it, never a room above it nor a sibling
room of the same height (api and web know nothing of each other). `service/` as a whole sits
above `model/`, which sits above `features/`. And no module of `service/` may take part in an
import circle, counting imports inside functions too: a circle hidden in a function body is
still a circle a reader has to untangle.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERVICE = ROOT / "service"

# Height of each room; a module may import only rooms of lower height, or its own room.
ROOMS = {"base": 0, "store": 1, "scoring": 2, "rights": 3, "api": 4, "web": 4, "app": 5,
         "cli": 6}
PACKAGES = {"features": 0, "model": 1, "service": 2}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in SERVICE.rglob("*.py") if ".venv" not in p.parts}


def _imports(path: Path, known: set[str]) -> set[str]:
    """Every first-party module `path` imports, at module level or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                child = f"{node.module}.{alias.name}"
                found.add(child if child in known else node.module)
    return {name for name in found if name.split(".")[0] in PACKAGES}


def room_of(module: str) -> str:
    """The room of a module of `service/`: its first package below `service`; the modules
    directly in `service/` (the app factory, the WSGI entry) make the room `app`."""
    parts = module.split(".")
    if len(parts) >= 3 or (len(parts) == 2 and parts[1] in ROOMS):
        return parts[1]
    return "app"


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: {m for m in _imports(path, known) if m in known and m != name}
            for name, path in modules.items()}


def test_every_module_of_service_lives_in_a_known_room():
    strays = sorted(m for m in _modules() if room_of(m) not in ROOMS)
    assert not strays, f"modules outside the rooms {sorted(ROOMS)}: {strays}"


def test_no_room_imports_a_room_above_it_or_beside_it():
    modules = _modules()
    wrong = []
    for name, path in modules.items():
        own = room_of(name)
        for target in _imports(path, set(modules)):
            package = target.split(".")[0]
            if package != "service":
                continue  # service may import model and features (tested below)
            other = room_of(target)
            if other != own and ROOMS[other] >= ROOMS[own]:
                wrong.append(f"{name} ({own}) imports {target} ({other})")
    assert not wrong, "imports that point up or sideways:\n" + "\n".join(sorted(wrong))


def test_features_and_model_never_import_the_layers_above_them():
    wrong = []
    for package, height in PACKAGES.items():
        for path in (ROOT / package).rglob("*.py"):
            for target in _imports(path, set()):
                if PACKAGES[target.split(".")[0]] > height:
                    wrong.append(f"{_module_name(path)} imports {target}")
    assert not wrong, "\n".join(sorted(wrong))


def _circle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of `graph`, as the list of modules around it, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_no_import_circle_inside_service():
    circle = _circle(_graph())
    assert circle is None, "import circle: " + " -> ".join(circle)


def test_the_circle_finder_finds_a_circle_and_the_room_rule_knows_the_rooms():
    """The two rules above must be able to fail: a planted circle is found, and the rooms
    resolve as the docstring says."""
    assert _circle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _circle({"a": {"b"}, "b": set()}) is None
    assert room_of("service.store.tables") == "store"
    assert room_of("service.app") == "app"
    assert room_of("service.cli.main") == "cli"
    assert ROOMS["store"] < ROOMS["scoring"] < ROOMS["rights"] < ROOMS["api"] < ROOMS["cli"]
