"""A Kubernetes API server that only answers discovery, for `kubectl apply --dry-run=client`.

kubectl needs the API's discovery documents to map each object's apiVersion/kind to a resource
(and to tell namespaced from cluster-scoped kinds) even when it sends nothing. This serves
/version, /api, /api/v1, /apis and /apis/GROUP/VERSION for the kinds found in the manifests
given on the command line (plural and scope from a CustomResourceDefinition when the files hold
one, else from the built-in table below), answers 404 for every object (so client-side apply
treats each as new) and 404 for /openapi/* (run kubectl with --validate=false; schemas are
checked offline elsewhere). Anything but a GET is logged as unexpected and refused: a client dry
run must not write. Writes a kubeconfig pointing at itself, then serves until killed.

Usage: python discovery_stub.py KUBECONFIG-OUT MANIFEST...   (needs PyYAML)
"""

import http.server
import json
import pathlib
import sys
import threading

import yaml

# Built-in kinds: (group/version, kind) -> (plural, namespaced).
BUILTIN = {
    ("v1", "Namespace"): ("namespaces", False),
    ("v1", "ConfigMap"): ("configmaps", True),
    ("v1", "Secret"): ("secrets", True),
    ("v1", "Service"): ("services", True),
    ("v1", "ServiceAccount"): ("serviceaccounts", True),
    ("v1", "Pod"): ("pods", True),
    ("apps/v1", "Deployment"): ("deployments", True),
    ("policy/v1", "PodDisruptionBudget"): ("poddisruptionbudgets", True),
    ("networking.k8s.io/v1", "NetworkPolicy"): ("networkpolicies", True),
    ("autoscaling/v2", "HorizontalPodAutoscaler"): ("horizontalpodautoscalers", True),
    ("coordination.k8s.io/v1", "Lease"): ("leases", True),
    ("rbac.authorization.k8s.io/v1", "Role"): ("roles", True),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): ("rolebindings", True),
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): ("clusterroles", False),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): ("clusterrolebindings", False),
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"): ("customresourcedefinitions", False),
    ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicy"): ("validatingadmissionpolicies", False),
    ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicyBinding"): ("validatingadmissionpolicybindings", False),
    ("monitoring.coreos.com/v1", "ServiceMonitor"): ("servicemonitors", True),
    ("monitoring.coreos.com/v1", "PodMonitor"): ("podmonitors", True),
    ("monitoring.coreos.com/v1", "PrometheusRule"): ("prometheusrules", True),
}


def resources(paths):
    """{group/version: {kind: (plural, namespaced)}} for every kind in the files."""
    docs = [d for p in paths for d in yaml.safe_load_all(pathlib.Path(p).read_text()) if isinstance(d, dict)]
    known = dict(BUILTIN)
    for d in docs:
        if d.get("kind") == "CustomResourceDefinition":
            s = d["spec"]
            for v in s["versions"]:
                known[(f"{s['group']}/{v['name']}", s["names"]["kind"])] = (s["names"]["plural"], s["scope"] == "Namespaced")
    out = {}
    for d in docs:
        key = (d.get("apiVersion"), d.get("kind"))
        if key not in known:
            sys.exit(f"discovery_stub: {key[0]} {key[1]} is neither built in nor defined by a CRD in the files")
        out.setdefault(key[0], {})[key[1]] = known[key]
    # Namespaces always exist as a resource (kubectl looks them up for -n).
    out.setdefault("v1", {})["Namespace"] = BUILTIN[("v1", "Namespace")]
    return out


def resource_list(gv, kinds):
    verbs = ["create", "delete", "get", "list", "patch", "update", "watch"]
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv,
            "resources": [{"name": plural, "singularName": kind.lower(), "namespaced": ns, "kind": kind, "verbs": verbs}
                          for kind, (plural, ns) in sorted(kinds.items())]}


def documents(res):
    docs = {"/version": {"major": "1", "minor": "33", "gitVersion": "v1.33.1", "platform": "linux/amd64"},
            "/api": {"kind": "APIVersions", "versions": ["v1"],
                     "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]},
            "/api/v1": resource_list("v1", res.get("v1", {}))}
    groups = {}
    for gv, kinds in res.items():
        if "/" in gv:
            groups.setdefault(gv.split("/")[0], []).append(gv)
            docs[f"/apis/{gv}"] = resource_list(gv, kinds)
    docs["/apis"] = {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
        {"name": g, "versions": [{"groupVersion": gv, "version": gv.split("/")[1]} for gv in gvs],
         "preferredVersion": {"groupVersion": gvs[0], "version": gvs[0].split("/")[1]}}
        for g, gvs in sorted(groups.items())]}
    return docs


def main():
    kubeconfig, paths = sys.argv[1], sys.argv[2:]
    docs = documents(resources(paths))

    class Handler(http.server.BaseHTTPRequestHandler):
        def reply(self, code, body):
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            path = self.path.split("?", 1)[0].rstrip("/")
            if path in docs:
                return self.reply(200, docs[path])
            self.reply(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound",
                             "code": 404, "message": f"{path} not found (discovery stub)"})

        def refuse(self):
            print(f"discovery_stub: unexpected {self.command} {self.path}", file=sys.stderr, flush=True)
            self.reply(405, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 405,
                             "message": "the discovery stub takes no writes"})

        do_POST = do_PUT = do_PATCH = do_DELETE = refuse

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port = server.server_address[1]
    pathlib.Path(kubeconfig).write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "stub",
        "clusters": [{"name": "stub", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
        "users": [{"name": "stub", "user": {}}],
        "contexts": [{"name": "stub", "context": {"cluster": "stub", "user": "stub", "namespace": "stub-current"}}],
    }))
    print(f"discovery stub on 127.0.0.1:{port}: {', '.join(sorted(docs))}", flush=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    threading.Event().wait()


if __name__ == "__main__":
    main()
