"""How the test suite is laid out: each technique's own tests in ``tests/techniques/test_<id>.py``, test modules
with unique names, and no test module importing another (shared helpers are conftest fixtures or helper modules
such as ``tests/cdp.py``, never a test module)."""

from __future__ import annotations

import ast
from pathlib import Path

from reportgen import registry

TESTS = Path(__file__).resolve().parent


def _test_modules() -> list[Path]:
    return sorted(p for p in TESTS.rglob("test_*.py") if "__pycache__" not in p.parts)


def _imported(path: Path) -> set[str]:
    """Top-level names of every module ``path`` imports, at module level or inside functions ('tests.x' as 'x')."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        for name in names:
            parts = name.split(".")
            out.add(parts[1] if parts[0] == "tests" and len(parts) > 1 else parts[0])
    return out


def test_no_test_module_imports_another():
    stems = {p.stem for p in _test_modules()}
    bad = {str(p.relative_to(TESTS)): sorted(_imported(p) & stems)
           for p in sorted(TESTS.rglob("*.py")) if _imported(p) & stems}
    assert not bad, f"modules importing a test module (make it a conftest fixture or a helper module): {bad}"


def test_test_module_names_are_unique():
    """The tests folders are not packages: pytest imports each test module by its base name."""
    seen: dict[str, list[str]] = {}
    for p in _test_modules():
        seen.setdefault(p.name, []).append(str(p.relative_to(TESTS)))
    assert not {k: v for k, v in seen.items() if len(v) > 1}


def test_every_technique_has_its_own_test_module():
    missing = [t.id for t in registry.all_techniques() if not (TESTS / "techniques" / f"test_{t.id}.py").is_file()]
    assert not missing, f"techniques without tests/techniques/test_<id>.py: {missing}"
