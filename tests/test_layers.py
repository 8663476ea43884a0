"""The package's layers: pure modules import no I/O, lower layers never import higher ones."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "operator" / "redisqueue"

# From the bottom up; a module may import only from its own layer or the ones below.
LAYERS: list[set[str]] = [
    {"contract", "backoff"},
    {"settings", "spec"},
    {"crd", "builders"},
    {"metrics"},
    {"client", "probe"},
    {"health", "kube"},
    {"devserver", "reconcile"},
    {"handlers", "runner"},
    {"cli", "__main__"},
]
PURE = {"contract", "backoff", "settings", "spec", "crd", "builders"}
# backoff subclasses redis-py's AbstractBackoff (an interface, no connections).
ALLOWED = {"backoff": {"redis"}}
IO_LIBRARIES = {
    "redis",
    "aiohttp",
    "kopf",
    "kubernetes_asyncio",
    "prometheus_client",
    "socket",
    "subprocess",
    "asyncio",
}


def _layer(module: str) -> int:
    for index, layer in enumerate(LAYERS):
        if module in layer:
            return index
    raise AssertionError(f"redisqueue.{module} is in no layer; add it to LAYERS")


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:  # from .x import y / from . import x
                if node.module:
                    found.add(node.module.split(".")[0])
                else:
                    found.update(alias.name for alias in node.names)
            elif node.module:
                parts = node.module.split(".")
                found.add(
                    parts[1] if parts[0] == "redisqueue" and len(parts) > 1 else "ext:" + parts[0]
                )
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                found.add(
                    parts[1] if parts[0] == "redisqueue" and len(parts) > 1 else "ext:" + parts[0]
                )
    return found


MODULES = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")


@pytest.mark.parametrize("module", MODULES)
def test_module_imports_only_its_layer_or_below(module: str) -> None:
    own = _layer(module)
    for imported in _imports(PACKAGE / f"{module}.py"):
        if imported.startswith("ext:"):
            continue
        assert _layer(imported) <= own, f"redisqueue.{module} imports higher redisqueue.{imported}"


@pytest.mark.parametrize("module", sorted(PURE))
def test_pure_modules_do_no_io(module: str) -> None:
    external = {i[4:] for i in _imports(PACKAGE / f"{module}.py") if i.startswith("ext:")}
    external -= ALLOWED.get(module, set())
    assert not external & IO_LIBRARIES, f"redisqueue.{module} imports {external & IO_LIBRARIES}"
