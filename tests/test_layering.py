"""The data flow is the folder structure: a stage imports only the stages below it, and a server family
imports no other family. Read from the source with ast, so a lazy import inside a function counts too,
and so does a module loaded by name (importlib.import_module)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from conftest import TREE

# Lowest first. The families (probes/) sit between the transport they speak over and the runner that
# calls them; the lab and the CLI stand above everything.
STAGES = ("core", "targets", "discovery", "transport", "probes", "fingerprint", "assess", "policy", "results",
          "outputs", "scanner", "cli")
ROOTS = {"netaudit": TREE / "netaudit", "probes": TREE / "probes"}


def modules() -> list[tuple[str, Path]]:
    out = [(f"netaudit.{p.relative_to(ROOTS['netaudit']).with_suffix('').as_posix().replace('/', '.')}", p)
           for p in sorted(ROOTS["netaudit"].rglob("*.py"))]
    out += [(f"netaudit.probes.{p.relative_to(ROOTS['probes']).with_suffix('').as_posix().replace('/', '.')}", p)
            for p in sorted(ROOTS["probes"].rglob("*.py"))]
    return out


def imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level:
            found.append(f"(relative level {node.level}) {node.module}")
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names]
    return [name for name in found if name.startswith(("netaudit", "(relative"))]


MODULE_NAME = re.compile(r"netaudit(\.\w+)+")


def _names_a_module(node: ast.AST) -> str | None:
    """A string that spells a netaudit module: "netaudit.x.y", "netaudit.x.y:function", or the constant
    head of an f-string, f"netaudit.probes.{folder}.{module}"."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        text = node.value.split(":")[0]
    elif isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant):
        text = str(node.values[0].value).rstrip(".")
    else:
        return None
    return text if MODULE_NAME.fullmatch(text) else None


def string_imports(path: Path) -> list[str]:
    """Modules a file loads by name with importlib.import_module (or __import__). A literal argument names
    its module; a computed one (a table's entry, a declaration's attribute) counts as every netaudit module
    name the file spells, since that is where such a table lives."""
    tree = ast.parse(path.read_text())
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call) and (
        isinstance(node.func, ast.Attribute) and node.func.attr == "import_module"
        or isinstance(node.func, ast.Name) and node.func.id in ("import_module", "__import__"))]
    found = [name for call in calls if call.args and (name := _names_a_module(call.args[0]))]
    if any(not call.args or _names_a_module(call.args[0]) is None for call in calls):
        found += [name for node in ast.walk(tree) if (name := _names_a_module(node))]
    return found


def stage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in STAGES else None


def test_every_module_is_in_a_stage():
    loose = [m for m, _ in modules() if stage(m) is None and m not in ("netaudit.__init__", "netaudit.__main__")]
    assert loose == [], "modules outside the stage folders"


def test_no_stage_imports_a_higher_one():
    wrong = []
    for module, path in modules():
        own = stage(module)
        for name in imports(path) + string_imports(path):
            assert not name.startswith("(relative"), f"{module}: use absolute imports ({name})"
            other = stage(name)
            if name.startswith("netaudit.lab"):
                if own != "cli":
                    wrong.append(f"{module} imports {name} (only the CLI may start the lab)")
            elif other is not None and own is not None and STAGES.index(other) > STAGES.index(own):
                wrong.append(f"{module} ({own}) imports {name} ({other})")
    assert wrong == []


def test_no_family_imports_another():
    wrong = []
    for module, path in modules():
        parts = module.split(".")
        if parts[1] != "probes" or len(parts) < 4:
            continue  # probes.base and probes.common are shared by all families
        for name in imports(path):
            other = name.split(".")
            if other[:2] == ["netaudit", "probes"] and len(other) > 3 and other[2] not in ("base", "common") \
                    and other[2] != parts[2]:
                wrong.append(f"{module} imports {name}")
    assert wrong == []


def test_each_family_is_one_folder_with_its_declaration():
    folders = [p for p in ROOTS["probes"].iterdir() if p.is_dir() and not p.name.startswith("_")]
    assert folders and all((p / "family.toml").is_file() and (p / "__init__.py").is_file() for p in folders)
    assert sorted(p.name for p in ROOTS["probes"].glob("*.py")) == ["__init__.py", "base.py", "common.py"]


def test_a_module_loaded_by_name_counts_as_an_import(tmp_path):
    """The check reads importlib's string imports, a literal one or one from a table in the same file."""
    literal = tmp_path / "literal.py"
    literal.write_text('import importlib\nimportlib.import_module("netaudit.fingerprint.loader")\n')
    table = tmp_path / "table.py"
    table.write_text('import importlib\nPROBES = f"netaudit.probes.{1}"\n'
                     'WRITERS = {"x": "netaudit.outputs.render:to_text"}\n'
                     'def load(name):\n    return importlib.import_module(name)\n')
    assert string_imports(literal) == ["netaudit.fingerprint.loader"]
    assert sorted(string_imports(table)) == ["netaudit.outputs.render", "netaudit.probes"]
    assert [stage(m) for m in string_imports(literal)] == ["fingerprint"]
