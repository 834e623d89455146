"""`recipe-harness` subcommands on small trees."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from harness.cli import main
from harness.recipe.schemas import crd_to_schemas

from .conftest import hostile_tree

CRDS = Path(__file__).resolve().parents[2] / "shared" / "reference" / "crds"


def test_check_prints_findings_and_fails(tmp_path, capsys):
    tree = hostile_tree(tmp_path / "t")
    assert main(["check", "--recipes-dir", str(tree), "--recipe", "m1/vllm/dupkey"]) == 1
    out = capsys.readouterr().out
    assert "[yaml-well-formed] duplicate key 'kind'" in out and "1 recipes checked" in out


def test_check_json(tmp_path, capsys):
    tree = hostile_tree(tmp_path / "t")
    main(["check", "--recipes-dir", str(tree), "--format", "json"])
    data = json.loads(capsys.readouterr().out)
    assert data["summary"]["errors"] > 0 and {"check_id", "file", "line", "column", "message", "hint"} <= set(
        data["findings"][0]
    )


def test_unknown_selector_exit_2(tmp_path, capsys):
    tree = hostile_tree(tmp_path / "t")
    assert main(["check", "--recipes-dir", str(tree), "--recipe", "zzz"]) == 2
    assert "matches no recipe" in capsys.readouterr().err


def test_python_dash_m_harness_runs():
    out = subprocess.run([sys.executable, "-m", "harness", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and "recipe-harness" in out.stdout


def test_crd_conversion_is_strict():
    crd = {
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "things.example.com"},
        "spec": {
            "group": "example.com",
            "names": {"kind": "Thing"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "properties": {
                                        "size": {"x-kubernetes-int-or-string": True},
                                        "note": {"type": "string", "nullable": True},
                                        "free": {
                                            "type": "object",
                                            "x-kubernetes-preserve-unknown-fields": True,
                                            "properties": {"a": {"type": "string"}},
                                        },
                                    },
                                }
                            },
                        }
                    },
                }
            ],
        },
    }
    import jsonschema

    schema = crd_to_schemas(crd)[("example.com/v1", "Thing")]
    v = jsonschema.Draft7Validator(schema)
    ok = {
        "apiVersion": "example.com/v1",
        "kind": "Thing",
        "metadata": {"name": "x"},
        "spec": {"size": "10Gi", "note": None, "free": {"a": "b", "anything": 1}},
    }
    assert not list(v.iter_errors(ok))
    bad = dict(ok, spec={"size": 1.5, "typo": 1})
    messages = " ".join(e.message for e in v.iter_errors(bad))
    assert "typo" in messages and "1.5" in messages


def test_import_crd_command(tmp_path, capsys):
    crd = tmp_path / "crd.yaml"
    crd.write_text("""apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: things.example.com}
spec:
  group: example.com
  names: {kind: Thing}
  versions:
    - name: v1
      served: true
      schema: {openAPIV3Schema: {type: object, properties: {spec: {type: object}}}}
""")
    assert (
        main(
            [
                "schemas",
                "import-crd",
                str(crd),
                "--out",
                str(tmp_path / "out"),
                "--release",
                "9.9.9",
                "--source-repo",
                "example/repo",
                "--source-path",
                "crd.yaml",
                "--commit",
                "abc",
            ]
        )
        == 0
    )
    assert (tmp_path / "out" / "example.com" / "thing_v1.json").is_file()
    import hashlib

    prov = json.loads((tmp_path / "out" / "provenance.json").read_text())["things.example.com"]
    assert prov["sha256"] == hashlib.sha256(crd.read_bytes()).hexdigest()
    assert prov["source"] == {"repo": "example/repo", "path": "crd.yaml", "commit": "abc", "release": "9.9.9"}
    assert prov["schemas"] == ["example.com/thing_v1.json"]


def test_registry_option_replaces_the_allow_list(capsys):
    # the shipped catalogue pulls from nvcr.io and docker.io; allowing only nvcr.io flags the rest
    assert main(["check", "--recipe", "qwen3-32b/vllm/agg-round-robin"]) == 0
    capsys.readouterr()
    assert main(["check", "--recipe", "qwen3-32b/vllm/agg-round-robin", "--registry", "nvcr.io"]) == 1
    out = capsys.readouterr().out
    assert "[image-registry-allowed]" in out and "docker.io" in out


def test_checks_id_shows_its_defect_fixture_as_the_failing_example(capsys):
    assert main(["checks", "router-mode-matches"]) == 0
    out = capsys.readouterr().out
    assert "Failing example: tests/fixtures/defects/router-mode-mismatch.yaml" in out
    assert (
        "edit   qwen3-32b/vllm/disagg-kv-router/deploy.yaml: '--router-mode, kv]' -> '--router-mode, round-robin]'"
        in out
    )
    assert (
        "finding recipes/qwen3-32b/vllm/disagg-kv-router/deploy.yaml:39:58: [router-mode-matches] frontend Frontend "
        "runs --router-mode round-robin but the recipe's router is kv"
    ) in out
