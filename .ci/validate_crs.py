#!/usr/bin/env python3
"""Validate custom-resource YAML against the generated CRD schemas, offline.

usage: validate_crs.py CRD_DIR FILE_OR_DIR...

Every document whose apiVersion/kind matches a CRD in CRD_DIR is checked against that CRD's
openAPIV3Schema (OpenAPI `nullable` is mapped to JSON Schema; `x-kubernetes-*` keywords are
ignored — CEL rules are evaluated by the API server, not here). Documents of other kinds are
skipped. Exits 1 listing every failure.
"""
import pathlib
import sys

import jsonschema
import yaml


def to_json_schema(node):
    if isinstance(node, dict):
        out = {k: to_json_schema(v) for k, v in node.items() if not k.startswith("x-kubernetes-")}
        if out.pop("nullable", False) and "type" in out:
            out["type"] = [out["type"], "null"]
        return out
    if isinstance(node, list):
        return [to_json_schema(v) for v in node]
    return node


def load_crds(crd_dir):
    schemas = {}
    for path in sorted(pathlib.Path(crd_dir).glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            group = doc["spec"]["group"]
            kind = doc["spec"]["names"]["kind"]
            for version in doc["spec"]["versions"]:
                schema = version["schema"]["openAPIV3Schema"]
                schemas[(f"{group}/{version['name']}", kind)] = to_json_schema(schema)
    return schemas


def files(args):
    for a in args:
        p = pathlib.Path(a)
        if p.is_dir():
            yield from sorted(q for q in p.iterdir() if q.suffix in (".yaml", ".yml"))
        else:
            yield p


def main():
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 64
    schemas = load_crds(sys.argv[1])
    failures, checked = [], 0
    for path in files(sys.argv[2:]):
        for i, doc in enumerate(yaml.safe_load_all(path.read_text()), start=1):
            if not isinstance(doc, dict):
                continue
            schema = schemas.get((doc.get("apiVersion"), doc.get("kind")))
            if schema is None:
                continue
            checked += 1
            errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(doc), key=str)
            for e in errors:
                where = "/".join(str(p) for p in e.absolute_path) or "<root>"
                failures.append(f"{path} (document {i}, {doc['kind']}): {where}: {e.message}")
    for f in failures:
        print("FAIL", f)
    print(f"{checked} custom resources checked against {len(schemas)} CRD schemas, {len(failures)} failures")
    return 1 if failures or checked == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
