"""The loader turns every hostile input into a problem with a file and line, never an exception."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.recipe.yamlsrc import SrcList, SrcMap, load_yaml_file, loc_at_path, parse_yaml_bytes

BOMB = b"""a: &a ["x","x","x","x","x","x","x","x","x"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: [*g,*g,*g,*g,*g,*g,*g,*g,*g]
"""


def parse(raw: bytes):
    return parse_yaml_bytes(raw, Path("x.yaml"))


def test_positions_of_keys_values_and_items():
    r = parse(b"kind: Job\nspec:\n  args:\n    - --a\n    - --b\n---\nkind: ConfigMap\n")
    assert not r.problems
    first, second = r.documents
    assert isinstance(first.data, SrcMap) and first.data.key_loc("spec").line == 2
    args = first.data["spec"]["args"]
    assert isinstance(args, SrcList) and [args.loc_of(i).line for i in range(2)] == [4, 5]
    assert second.loc.line == 7 and second.kind == "ConfigMap"
    assert loc_at_path(first.data, ("spec", "args", 1), first.loc).line == 5
    assert loc_at_path(first.data, ("spec", "missing"), first.loc).line == 3  # deepest known place


@pytest.mark.parametrize(
    "raw, line, words",
    [
        (b"a: 1\nb: 2\na: 3\n", 3, "duplicate key 'a' (first defined at line 1)"),
        (b"kind: Job\nname: \xff\xfe\n", 2, "not valid UTF-8"),
        (BOMB, None, "alias/anchor bomb"),
        (b"", 1, "empty"),
        (b"# just a comment\n\n", 1, "empty"),
        (b"a: [1, 2\nb: 3\n", None, "YAML syntax error"),
        (b"a: &x [*x]\n", 1, "nesting"),
        (b"[" * 5000, 1, "YAML syntax error"),
        (b"a: 1\n\x00\n", 2, "NUL"),
        (b"---\n---\n", 1, "no content"),
    ],
    ids=[
        "duplicate-key",
        "not-utf8",
        "billion-laughs",
        "empty",
        "only-comments",
        "syntax",
        "recursive-alias",
        "deep-flow",
        "nul-byte",
        "empty-documents",
    ],
)
def test_hostile_input_is_a_problem(raw, line, words):
    r = parse(raw)
    assert r.problems, "expected a problem"
    p = r.problems[0]
    assert words in p.message
    assert p.loc.file == Path("x.yaml")
    if line is not None:
        assert p.loc.line == line


def test_alias_bomb_yields_no_documents():
    assert parse(BOMB).documents == []


def test_merge_keys_are_expanded_and_explicit_keys_win():
    r = parse(b"base: &b {x: 1, y: 2}\nobj: {<<: *b, y: 3}\n")
    assert dict(r.documents[0].data["obj"]) == {"x": 1, "y": 3}


def test_file_over_size_cap(tmp_path):
    f = tmp_path / "big.yaml"
    f.write_text("a: 1\n" + "# pad\n" * 1000)
    r = load_yaml_file(f, tmp_path, max_bytes=1000)
    assert "over the 1000-byte cap" in r.problems[0].message and not r.documents


def test_symlink_out_of_tree_is_refused(tmp_path):
    outside = tmp_path / "secret.yaml"
    outside.write_text("token: x\n")
    tree = tmp_path / "tree"
    tree.mkdir()
    link = tree / "deploy.yaml"
    link.symlink_to(outside)
    r = load_yaml_file(link, tree)
    assert "symlink leaves the recipe tree" in r.problems[0].message and not r.documents


def test_symlink_inside_tree_is_fine(tmp_path):
    (tmp_path / "real.yaml").write_text("a: 1\n")
    os.symlink("real.yaml", tmp_path / "link.yaml")
    r = load_yaml_file(tmp_path / "link.yaml", tmp_path)
    assert not r.problems and r.documents[0].data == {"a": 1}


def test_unreadable_path_is_a_problem(tmp_path):
    r = load_yaml_file(tmp_path / "dir.yaml" if (tmp_path / "dir.yaml").mkdir() is None else None, tmp_path)
    assert r.problems and "not a regular file" in r.problems[0].message


def test_safe_loading_refuses_python_tags():
    r = parse(b"a: !!python/object/apply:os.system ['echo hi']\n")
    assert r.problems and "unsupported YAML tag" in r.problems[0].message and r.problems[0].loc.line == 1


def test_python_tag_on_scalar_is_refused_not_executed():
    r = parse(b"a: !!python/name:os.system\n")
    assert r.problems and r.problems[0].loc.line == 1
