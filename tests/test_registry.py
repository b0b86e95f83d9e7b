"""The registry is the only list of kinds: every kind used anywhere in the code, templates, lab or data is
declared by exactly one family, and every family declaration is complete."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from netaudit.core import registry
from netaudit.core.registry import RegistryError, _family
from netaudit.fingerprint import loader

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [p for folder in ("netaudit", "probes", "lab", "bench") for p in (ROOT / folder).rglob("*.py")]
KIND_NAME = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
# Other things the code calls a "kind", which are not endpoint kinds.
OTHER_KINDS = {"resource": "SARIF logicalLocation kind", "segments": "a lab's kind", "loopback": "a lab's kind",
               "base": "a lab's kind", "str": "the registry's type of the kind field"}


def _is_kind_ref(node: ast.AST) -> bool:
    """`x.kind`, `x["kind"]`, `x.get("kind")`."""
    if isinstance(node, ast.Attribute):
        return node.attr == "kind"
    if isinstance(node, ast.Subscript):
        return isinstance(node.slice, ast.Constant) and node.slice.value == "kind"
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get":
        return bool(node.args) and isinstance(node.args[0], ast.Constant) and node.args[0].value == "kind"
    return False


def _strings(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return [s for item in node.elts for s in _strings(item)]
    return []


def kinds_used_in_python() -> dict[str, str]:
    """Every string compared with, assigned to, or passed as a kind, with where it was seen."""
    used: dict[str, str] = {}
    for path in SOURCES:
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            found: list[str] = []
            if isinstance(node, ast.Compare) and (_is_kind_ref(node.left) or any(map(_is_kind_ref, node.comparators))):
                found = [s for side in (node.left, *node.comparators) for s in _strings(side)]
            elif isinstance(node, ast.keyword) and node.arg == "kind":
                found = _strings(node.value)
            elif isinstance(node, ast.Assign) and any(map(_is_kind_ref, node.targets)):
                found = _strings(node.value)
            elif isinstance(node, ast.Dict):
                found = [s for k, v in zip(node.keys, node.values) if isinstance(k, ast.Constant) and k.value == "kind"
                         for s in _strings(v)]
            for name in found:
                if KIND_NAME.match(name):
                    used.setdefault(name, f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', '?')}")
    return used


def test_every_kind_used_in_the_code_is_declared():
    undeclared = {name: where for name, where in kinds_used_in_python().items()
                  if registry.kind(name) is None and name not in OTHER_KINDS}
    assert undeclared == {}


def test_every_kind_the_labs_expect_is_declared():
    from netaudit.lab import loopback, segments

    text = Path(loopback.__file__).read_text() + Path(segments.__file__).read_text()
    for name in re.findall(r'LabEndpoint\([^)]*?"([a-z0-9-]+)"\s*,\s*(?:proc|self|"|\w+\.name)', text):
        if "-" in name or name in ("grpc", "http", "tls", "unknown", "tensorboard"):
            assert registry.kind(name) is not None, name


def test_templates_name_no_kind_literally():
    """The HTML report and advice templates get kinds from the data, never spelled out."""
    for path in (ROOT / "report_templates").rglob("*.j2"):
        text = path.read_text()
        for name in registry.kinds():
            if "-" in name:
                assert f'"{name}"' not in text and f"'{name}'" not in text, (path.name, name)


def test_every_family_is_complete():
    for family in registry.families():
        assert family.title and family.source.startswith("probes/")
        for kind in family.kinds:
            assert kind.label and kind.uri_scheme
            if kind.sensitive:
                assert kind.ports and kind.policy_cvss, kind.name
                assert any(kind.name in (a.kinds or ()) for a in registry.advice_groups()), kind.name
        for probe in family.probes:
            assert callable(loader.function(probe)), (family.name, probe.module, probe.function)


@pytest.mark.parametrize("text, message", [
    ('[family]\nname = "x"\ntitle = "X"\n[[kind]]\nname = "x"\nlabel = "X"\nsensitive = true\n',
     "needs policy_severity"),
    ('[family]\nname = "x"\ntitle = "X"\n[[probe]]\nmodule = "m"\nchannel = "udp"\n', "channel 'udp'"),
    ('[family]\nname = "x"\ntitle = "X"\n[[probe]]\nmodule = "m"\nchannel = "grpc"\nsniffed = ["h3"]\n',
     "unknown sniff result"),
    ('[family]\nname = "x"\ntitle = "X"\n[facts]\na = "float"\n', "type 'float'"),
    ('[family]\nname = "x"\ntitle = "X"\n[safety]\ndo_not_cal = []\n', "unknown key 'do_not_cal'"),
    ('[familly]\nname = "x"\n', "unknown key 'familly'"),
    ('[family]\nname = "x"\ntitle = "X"\n[[kind]]\nname = "x"\nlabel = "X"\nsole_grpc_service = "yes"\n',
     "sole_grpc_service must be true or false"),
    ('[family]\nname = "x"\ntitle = "X"\n[[rule]]\nid = "x-open"\ntitle = "open"\n', "rule 'x-open': missing 'why'"),
    ('[family]\nname = "x"\ntitle = "X"\n[[rule]]\nid = "x-open"\nwhy = """a\nb"""\n', "must be one line"),
])
def test_a_broken_family_declaration_is_a_clear_error(text, message):
    with pytest.raises(RegistryError) as err:
        _family(text, "probes/x/family.toml", "x")
    assert message in str(err.value) and "probes/x/family.toml" in str(err.value)


def test_the_published_schemas_repeat_the_models_tables():
    """The schemas are for other tools and cannot import the model, so they hold a copy of its tables;
    this keeps each copy equal to the one home (netaudit/core/model.py)."""
    import json
    from typing import get_args

    from netaudit.core.model import SEVERITIES, TRANSPORTS, State

    for name in ("scan-v1", "report-v1"):
        schema = json.loads((ROOT / "netaudit" / "data" / "schemas" / f"{name}.json").read_text())
        assert schema["properties"]["findings"]["items"]["properties"]["severity"]["enum"] == list(SEVERITIES)
    endpoint = json.loads((ROOT / "netaudit" / "data" / "schemas" / "scan-v1.json").read_text())[
        "properties"]["endpoints"]["items"]["properties"]
    assert endpoint["state"]["enum"] == list(get_args(State))
    assert endpoint["transport"]["enum"] == [*TRANSPORTS, None]
