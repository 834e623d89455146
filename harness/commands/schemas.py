"""`recipe-harness schemas import-crd`: turn a published CRD into strict JSON Schemas with a provenance record."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.commands import examples
from harness.recipe.schemas import DYNAMO_SCHEMAS, SCHEMAS_DIR, CrdSource, write_crd_schemas
from harness.recipe.yamlsrc import load_yaml_file, to_plain


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "schemas",
        help="schema tools",
        description="Schema tools: turn a CustomResourceDefinition into strict JSON Schemas (kubeconform layout).",
        **examples(
            ("kubectl get crd dynamographdeployments.nvidia.com -o yaml > dgd.yaml", "your cluster's CRD"),
            ("recipe-harness schemas import-crd dgd.yaml", "its schemas under schemas/imported"),
        ),
    )
    inner = p.add_subparsers(dest="schemas_command", metavar="ACTION")
    imp = inner.add_parser(
        "import-crd",
        help="convert a CustomResourceDefinition into strict JSON Schemas (kubeconform layout)",
        description="Convert a CustomResourceDefinition into strict JSON Schemas (kubeconform layout).",
        **examples(
            ("recipe-harness schemas import-crd dgd.yaml", "schemas/imported/"),
            (
                "recipe-harness schemas import-crd CRD --release R --source-repo ai-dynamo/dynamo "
                "--source-path P --commit C",
                "regenerate schemas/dynamo/R/",
            ),
        ),
    )
    imp.add_argument(
        "file", type=Path, help="CRD YAML (e.g. kubectl get crd dynamographdeployments.nvidia.com -o yaml)"
    )
    imp.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"output folder (default: {SCHEMAS_DIR.name}/{DYNAMO_SCHEMAS}/RELEASE with --release, "
        f"else {SCHEMAS_DIR.name}/imported)",
    )
    imp.add_argument(
        "--release", default="", help="the Dynamo release this CRD is from (e.g. 1.4.0); recorded in provenance.json"
    )
    imp.add_argument("--source-repo", default="", help="repository the CRD was read from (e.g. ai-dynamo/dynamo)")
    imp.add_argument("--source-path", default="", help="the CRD's path in that repository")
    imp.add_argument("--commit", default="", help="the commit it was read at")
    imp.add_argument(
        "--note", default="", help="how sure the release attribution is (say so when the exact release is not pinned)"
    )
    imp.set_defaults(func=import_crd)
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])


def import_crd(args: argparse.Namespace) -> int:
    try:
        text = args.file.read_bytes()
    except OSError as exc:
        print(f"recipe-harness: {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    loaded = load_yaml_file(args.file, None, max_bytes=64 << 20)
    for prob in loaded.problems:
        print(f"{prob.loc.file}:{prob.loc.line}:{prob.loc.column}: {prob.message}", file=sys.stderr)
    crds = [
        to_plain(d.data) for d in loaded.documents if isinstance(d.data, dict) and d.kind == "CustomResourceDefinition"
    ]
    if not crds:
        print(f"recipe-harness: {args.file}: no CustomResourceDefinition found", file=sys.stderr)
        return 1
    out = args.out or (SCHEMAS_DIR / DYNAMO_SCHEMAS / args.release if args.release else SCHEMAS_DIR / "imported")
    source = CrdSource(args.source_repo, args.source_path, args.commit, args.release, args.note)
    for crd in crds:
        for path in write_crd_schemas(crd, out, text, source):
            print(f"wrote {path}")
    return 0
