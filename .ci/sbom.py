#!/usr/bin/env python3
"""CycloneDX 1.5 SBOMs (JSON) of the release binaries, from cargo's own view of the build.

    python3 .ci/sbom.py --target x86_64-unknown-linux-musl --out DIR pd-operator pd-scanner

Writes DIR/<binary>.cdx.json for each binary and checks each file (see `check`). The
components of a binary are the crates it is built from: `cargo tree` over all the binaries
at once, normal dependencies (proc macros included, build scripts' dependencies not), for
the target — the same feature resolution as the one `cargo build -p A -p B` that .ci/images
runs — each with its version, package URL, licence expression, crates.io SHA-256 (from
Cargo.lock) and the dependency graph. No tool beyond cargo and Python's standard library
(cargo-cyclonedx would add minutes of cold CI for the same content).
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tomllib
import uuid
from datetime import datetime, timezone

LINE = re.compile(r"^(\d+)(\S+) v(\S+)(.*)\|(.*)$")


def run(*args):
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout


def purl(name, version):
    return f"pkg:cargo/{name}@{version}"


def spdx(expression):
    """Cargo's legacy `MIT/Apache-2.0` spelling as the SPDX expression it stands for."""
    e = expression.strip()
    return re.sub(r"\s*/\s*", " OR ", e) if "/" in e else e


def graph(binaries, target):
    """Nodes (name, version) -> licence, edges, and the root node of each binary."""
    args = ["cargo", "tree", "--locked", "-e", "normal", "--target", target,
            "--prefix", "depth", "--format", "{p}|{l}"]
    for b in binaries:
        args += ["-p", b]
    nodes, edges, roots, stack = {}, {}, {}, []
    for line in run(*args).splitlines():
        # A subtree printed before is marked ` (*)` and not repeated; its edges are known.
        m = LINE.match(line.removesuffix(" (*)"))
        if not m:
            continue
        depth, name, version, _, licence = m.groups()
        depth, node = int(depth), (name, version)
        nodes.setdefault(node, licence)
        edges.setdefault(node, set())
        del stack[depth:]
        if depth == 0:
            roots[name] = node
        else:
            edges[stack[-1]].add(node)
        stack.append(node)
    missing = [b for b in binaries if b not in roots]
    if missing:
        sys.exit(f"cargo tree printed no tree for {missing}")
    return nodes, edges, roots


def reachable(edges, root):
    seen, todo = {root}, [root]
    while todo:
        for child in edges[todo.pop()]:
            if child not in seen:
                seen.add(child)
                todo.append(child)
    return seen


def bom(binary, root, nodes, edges, meta, lock, epoch, revision):
    members = reachable(edges, root)
    components, deps = [], []
    for node in sorted(members - {root}):
        name, version = node
        c = {"type": "library", "bom-ref": purl(name, version), "name": name,
             "version": version, "purl": purl(name, version), "scope": "required"}
        p = meta.get(node, {})
        if p.get("description"):
            c["description"] = " ".join(p["description"].split())
        if nodes[node]:
            c["licenses"] = [{"expression": spdx(nodes[node])}]
        checksum = lock.get(node)
        if checksum:
            c["hashes"] = [{"alg": "SHA-256", "content": checksum}]
        refs = []
        if p.get("repository"):
            refs.append({"type": "vcs", "url": p["repository"]})
        if p.get("source"):
            refs.append({"type": "distribution",
                         "url": f"https://crates.io/crates/{name}/{version}"})
        else:
            # A crate of this repository (pd-scanner and pd-operator link pd-engine), not from crates.io.
            c["properties"] = [{"name": "cargo:source", "value": "workspace"}]
        if refs:
            c["externalReferences"] = refs
        components.append(c)
    for node in sorted(members):
        deps.append({"ref": purl(*node),
                     "dependsOn": sorted(purl(*d) for d in edges[node])})
    name, version = root
    return {
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        # Stable for one binary at one revision: the same build gives the same document.
        "serialNumber": uuid.uuid5(uuid.NAMESPACE_URL,
                                   f"prompt-defenders/{binary}@{version}/{revision}").urn,
        "version": 1,
        "metadata": {
            "timestamp": datetime.fromtimestamp(epoch, timezone.utc)
                                 .strftime("%Y-%m-%dT%H:%M:%SZ"),
            "tools": {"components": [{"type": "application", "name": ".ci/sbom.py"}]},
            "component": {"type": "application", "bom-ref": purl(name, version),
                          "name": name, "version": version, "purl": purl(name, version),
                          "licenses": [{"expression": spdx(nodes[root] or "Apache-2.0")}],
                          "properties": [{"name": "git:revision", "value": revision}]},
        },
        "components": components,
        "dependencies": deps,
    }


def check(path, binary, lock_versions, must_have):
    """Minimal validation: the document parses, says CycloneDX, names the binary, and every
    component is a crate of Cargo.lock at the locked version, including `must_have`."""
    doc = json.load(open(path))
    errors = []
    if doc.get("bomFormat") != "CycloneDX" or doc.get("specVersion") != "1.5":
        errors.append("not a CycloneDX 1.5 document")
    if doc.get("metadata", {}).get("component", {}).get("name") != binary:
        errors.append("metadata.component is not the binary")
    comps = {c["name"]: c for c in doc.get("components", [])}
    for c in doc.get("components", []):
        if c["version"] not in lock_versions.get(c["name"], ()):
            errors.append(f"{c['name']} {c['version']} is not in Cargo.lock")
    for name in must_have:
        if name not in comps:
            errors.append(f"{name} is not a component")
    refs = {c["bom-ref"] for c in doc["components"]} | {doc["metadata"]["component"]["bom-ref"]}
    for d in doc.get("dependencies", []):
        if d["ref"] not in refs or any(x not in refs for x in d["dependsOn"]):
            errors.append(f"dependency graph names an unknown component at {d['ref']}")
    if errors:
        sys.exit(f"{path}:\n  " + "\n  ".join(errors))
    return len(comps)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--target", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("binaries", nargs="+")
    a = ap.parse_args()

    nodes, edges, roots = graph(a.binaries, a.target)
    metadata = json.loads(run("cargo", "metadata", "--locked", "--format-version", "1",
                              "--filter-platform", a.target))
    meta = {(p["name"], p["version"]): p for p in metadata["packages"]}
    with open(os.path.join(metadata["workspace_root"], "Cargo.lock"), "rb") as f:
        packages = tomllib.load(f)["package"]
    lock = {(p["name"], p["version"]): p.get("checksum") for p in packages}
    lock_versions = {}
    for p in packages:
        lock_versions.setdefault(p["name"], set()).add(p["version"])
    try:
        epoch = int(run("git", "log", "-1", "--format=%ct").strip())
        revision = run("git", "rev-parse", "HEAD").strip()
    except (subprocess.CalledProcessError, FileNotFoundError, ValueError):
        epoch, revision = 0, "unknown"

    # Crates each binary certainly links, as a check that the graph was read right.
    must_have = {"pd-scanner": ["pd-engine", "regex", "serde_json", "axum"],
                 "pd-operator": ["kube", "pd-engine", "regex"]}
    os.makedirs(a.out, exist_ok=True)
    for binary in a.binaries:
        doc = bom(binary, roots[binary], nodes, edges, meta, lock, epoch, revision)
        path = os.path.join(a.out, f"{binary}.cdx.json")
        with open(path, "w") as f:
            json.dump(doc, f, indent=1, sort_keys=False)
            f.write("\n")
        n = check(path, binary, lock_versions, must_have.get(binary, []))
        regex = next(c["version"] for c in doc["components"] if c["name"] == "regex") \
            if any(c["name"] == "regex" for c in doc["components"]) else "-"
        print(f"{path}: CycloneDX 1.5, {n} components (regex {regex}), "
              f"{os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()
