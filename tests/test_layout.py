"""The package's shape: modules use each other's public surface only, private torch behaviour is
reached through ``fp8pass/_compat/`` alone (one module per concern, each naming the torch versions
it was checked on), no library module is over 400 lines, and the library does not import its
harness."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parent.parent / "fp8pass"
MODULES = sorted(p for p in PACKAGE.rglob("*.py"))
LIBRARY = [p for p in MODULES if "bench" not in p.relative_to(PACKAGE).parts and p.name != "__main__.py"]


def _tree(path: Path) -> ast.AST:
    return ast.parse(path.read_text(), str(path))


def _fp8pass_imports(path: Path, tree: ast.AST):
    """(module the names come from, names) for every import of an fp8pass module."""
    package = ".".join(("fp8pass", *path.relative_to(PACKAGE).parent.parts))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module or ""
            if source.split(".")[0] == "fp8pass":
                yield source, [a.name for a in node.names], [a.asname or a.name for a in node.names]


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_reaches_into_anothers_private_names(path):
    tree = _tree(path)
    module_aliases = set()
    for source, names, aliases in _fp8pass_imports(path, tree):
        for name, alias in zip(names, aliases, strict=True):
            assert not name.startswith("_"), f"imports private {source}.{name}"
            module_aliases.add(alias)
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in module_aliases
        ):
            assert not node.attr.startswith("_"), (
                f"uses private {node.value.id}.{node.attr} (line {node.lineno})"
            )


def _private_torch_uses(tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            chain, cur = [node.attr], node.value
            while isinstance(cur, ast.Attribute):
                chain.append(cur.attr)
                cur = cur.value
            if isinstance(cur, ast.Name) and cur.id == "torch":
                parts = list(reversed(chain))
                if any(p.startswith("_") and not (p.startswith("__") and p.endswith("__")) for p in parts):
                    found.append(f"torch.{'.'.join(parts)} (line {node.lineno})")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("torch."):
            if any(p.startswith("_") for p in node.module.split(".")):
                found.append(f"from {node.module} import ... (line {node.lineno})")
    return found


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_private_torch_only_in_compat(path):
    if "_compat" in path.relative_to(PACKAGE).parts:
        return
    assert _private_torch_uses(_tree(path)) == []


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_library_module_is_over_400_lines(path):
    assert len(path.read_text().splitlines()) <= 400


def test_the_library_does_not_import_its_harness():
    for path in LIBRARY:
        for source, _, _ in _fp8pass_imports(path, _tree(path)):
            assert not source.startswith("fp8pass.bench"), f"{path.name} imports {source}"


COMPAT = sorted(p for p in (PACKAGE / "_compat").glob("*.py") if p.name != "__init__.py")


@pytest.mark.parametrize("path", COMPAT, ids=lambda p: p.name)
def test_compat_names_the_versions_each_reliance_was_checked_on(path):
    tree = _tree(path)
    assert "checked on" in (ast.get_docstring(tree) or "").replace("\n", " ").lower()
    public = [n for n in tree.body if isinstance(n, ast.FunctionDef) and not n.name.startswith("_")]
    unchecked = [
        f.name for f in public if "checked on" not in (ast.get_docstring(f) or "").replace("\n", " ").lower()
    ]
    assert unchecked == [], unchecked


def test_compat_modules_are_indexed():
    index = ast.get_docstring(_tree(PACKAGE / "_compat" / "__init__.py"))
    assert all(f":mod:`.{p.stem}`" in index for p in COMPAT)
