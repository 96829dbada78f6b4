"""Checks of the rendered chart, deploy/install.yaml, hack/kind-up.sh's manifests and the GitOps
examples: one subcommand each, called by .ci/chart (which renders what they read)."""
import copy
import json
import os
import pathlib
import re
import shlex
import subprocess
import sys

import yaml

REPO = pathlib.Path.cwd()
CHART = REPO / "charts/prompt-defenders"
FAILURES = []


def fail(msg):
    FAILURES.append(msg)
    print("FAIL", msg)


def check(cond, msg):
    if not cond:
        fail(msg)
    return cond


def docs(path):
    return [d for d in yaml.safe_load_all(pathlib.Path(path).read_text()) if isinstance(d, dict)]


def group(doc):
    api = doc.get("apiVersion", "")
    return api.split("/")[0] if "/" in api else ""


def finish(what):
    if FAILURES:
        print(f"{what}: {len(FAILURES)} failure(s)")
        sys.exit(1)
    print(f"{what}: ok")


# ── split ────────────────────────────────────────────────────────────────────────────────────
def cmd_split(rendered, outdir):
    """Sorts rendered objects by validator: upstream Kubernetes, prometheus-operator, ours."""
    out = {"upstream": [], "monitoring": [], "promptdefenders": []}
    for d in docs(rendered):
        g = group(d)
        if g == "monitoring.coreos.com":
            out["monitoring"].append(d)
        elif g == "promptdefenders.io":
            out["promptdefenders"].append(d)
        elif "." not in g or g.endswith(".k8s.io") or g in ("apps", "autoscaling", "policy", "batch"):
            out["upstream"].append(d)
        else:
            fail(f"{rendered}: {d.get('kind')} {g}: no validator for this API group")
    for k, v in out.items():
        pathlib.Path(outdir, f"{k}.yaml").write_text(yaml.safe_dump_all(v, sort_keys=False))
        print(f"{k}: {len(v)}")
    finish("split")


# ── prometheus-operator objects ──────────────────────────────────────────────────────────────
def strict_models(module_name):
    """Imports cloudcoil models with unknown fields forbidden (they are generated from the
    projects' CRD openAPIV3Schemas; cloudcoil itself ignores extra fields)."""
    import importlib

    import cloudcoil.pydantic as cp

    cp.BaseModel.model_config["extra"] = "forbid"
    return importlib.import_module(module_name)


def validate_model(model, doc, where):
    import pydantic

    try:
        model.model_validate(doc)
        return True
    except pydantic.ValidationError as e:
        for err in e.errors():
            loc = ".".join(str(p) for p in err["loc"])
            fail(f"{where}: {loc}: {err['msg']}")
        return False


def cmd_monitoring(*paths):
    v1 = strict_models("cloudcoil.models.prometheus_operator.v1")
    n = 0
    for path in paths:
        for d in docs(path):
            where = f"{path}: {d['kind']}/{d['metadata']['name']}"
            model = getattr(v1, d["kind"], None)
            if check(model is not None and d["apiVersion"] == "monitoring.coreos.com/v1", f"{where}: unknown kind"):
                validate_model(model, d, where)
                n += 1
    check(n > 0, "no prometheus-operator object rendered by any value set")
    print(f"{n} prometheus-operator objects checked")
    finish("monitoring.coreos.com/v1 schemas")


# ── the chart's contract ─────────────────────────────────────────────────────────────────────
# (group, resource) -> verbs, and why; templates/rbac.yaml must grant exactly this (the install chapter's RBAC
# table mirrors it). Derived from operator/src/controller/ and operator/src/leader.rs.
CHILD_VERBS = {"list", "watch", "create", "patch"}
EXPECTED_CLUSTER_RULES = {
    ("promptdefenders.io", "tenants"): {"get", "list", "watch"},
    ("promptdefenders.io", "rulepacks"): {"list", "watch"},
    ("promptdefenders.io", "scanpolicies"): {"list", "watch"},
    ("promptdefenders.io", "tenants/status"): {"patch"},
    ("promptdefenders.io", "rulepacks/status"): {"patch"},
    ("promptdefenders.io", "scanpolicies/status"): {"patch"},
    ("promptdefenders.io", "scanpolicies/finalizers"): {"update"},
    ("", "configmaps"): CHILD_VERBS | {"get"},
    ("", "services"): CHILD_VERBS,
    ("", "serviceaccounts"): CHILD_VERBS,
    ("apps", "deployments"): CHILD_VERBS | {"get"},
    ("networking.k8s.io", "networkpolicies"): CHILD_VERBS,
    ("autoscaling", "horizontalpodautoscalers"): CHILD_VERBS,
    ("policy", "poddisruptionbudgets"): CHILD_VERBS,
    ("rbac.authorization.k8s.io", "roles"): CHILD_VERBS,
    ("rbac.authorization.k8s.io", "rolebindings"): CHILD_VERBS,
    ("", "secrets"): {"create"},
    ("events.k8s.io", "events"): {"create", "patch"},
}
EXPECTED_DISCOVERY_RULES = {
    ("", "services", ("kubernetes",)): {"get"},
    ("discovery.k8s.io", "endpointslices", ()): {"list", "watch"},
}
EXPECTED_LEASE_RULES = {
    ("coordination.k8s.io", "leases", ("pd-operator-leader",)): {"get", "update"},
    ("coordination.k8s.io", "leases", ()): {"create"},
}
KIND_RESOURCE = {
    "ServiceAccount": ("", "serviceaccounts"),
    "Role": ("rbac.authorization.k8s.io", "roles"),
    "RoleBinding": ("rbac.authorization.k8s.io", "rolebindings"),
    "ConfigMap": ("", "configmaps"),
    "Service": ("", "services"),
    "NetworkPolicy": ("networking.k8s.io", "networkpolicies"),
    "Deployment": ("apps", "deployments"),
    "HorizontalPodAutoscaler": ("autoscaling", "horizontalpodautoscalers"),
    "PodDisruptionBudget": ("policy", "poddisruptionbudgets"),
}


def rules_map(rules, with_names=False):
    out = {}
    for r in rules:
        for g in r.get("apiGroups", []):
            for res in r.get("resources", []):
                key = (g, res, tuple(r.get("resourceNames", []))) if with_names else (g, res)
                check(with_names or not r.get("resourceNames"), f"ClusterRole rule on {res} names objects")
                out.setdefault(key, set()).update(r.get("verbs", []))
    return out


def by_kind(objs, kind):
    return [o for o in objs if o.get("kind") == kind]


def one(objs, kind, where):
    found = by_kind(objs, kind)
    check(len(found) == 1, f"{where}: expected one {kind}, found {len(found)}")
    return found[0] if found else {}


# What each ci/*-values.yaml must produce (beyond the checks every set gets).
EXPECT = {
    "default": dict(prefix="prompt-defenders", replicas=2, leader=True, sa="prompt-defenders",
                    operator_image="ghcr.io/prompt-defenders/pd-operator:0.1.0",
                    scanner_image="ghcr.io/prompt-defenders/pd-scanner:0.1.0", port=8081,
                    monitoring_ns="monitoring", monitors=set(), dashboard_ns=None, packs=[],
                    default_spread=True, egress="auto", reports=True),
    "full": dict(prefix="prompt-defenders", replicas=2, leader=True, sa="prompt-defenders",
                 operator_image="ghcr.io/prompt-defenders/pd-operator:0.1.0",
                 scanner_image="ghcr.io/prompt-defenders/pd-scanner:0.1.0", port=8081,
                 monitoring_ns="monitoring", monitors={"ServiceMonitor", "PodMonitor", "PrometheusRule"},
                 dashboard_ns="prompt-defenders-system", packs=["prompt-defenders-system"],
                 default_spread=True, egress="auto", reports=True, argocd=True,
                 image_allow="ghcr.io/prompt-defenders/,registry.example.internal/"),
    "minimal": dict(prefix="prompt-defenders", replicas=1, leader=False, sa="prompt-defenders",
                    operator_image="ghcr.io/prompt-defenders/pd-operator:0.1.0",
                    scanner_image="ghcr.io/prompt-defenders/pd-scanner:0.1.0", port=8081,
                    monitoring_ns="monitoring", monitors=set(), dashboard_ns=None, packs=[],
                    default_spread=True, egress="off"),
    "overrides": dict(prefix="pd", replicas=3, leader=True, sa="pd-operator",
                      operator_image="registry.example.internal/security/pd-operator:0.1.0-rc.1",
                      scanner_image="registry.example.internal/security/pd-scanner:0.1.0-rc.1",
                      port=9090, monitoring_ns="observability",
                      monitors={"ServiceMonitor", "PrometheusRule"}, dashboard_ns="grafana",
                      packs=["acme-prod", "acme-staging"], default_spread=False,
                      shared_ns="platform-packs", egress="10.96.0.1/32:443,10.0.16.0/28:443",
                      reports=True),
}


# The scanner pod-report policy (operator.scannerReportsServing), evaluated with cel-python:
# (name, requester, pod-name claim, change to the old pod, allowed?). `None` for allowed: the
# policy does not match the request at all.
def _pod(**meta):
    base = {"name": "acme-chat-scanner-5d9-abcde", "namespace": "acme-prod",
            "labels": {"app.kubernetes.io/name": "pd-scanner", "app.kubernetes.io/instance": "acme-chat"},
            "annotations": {"prometheus.io/scrape": "true"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "acme-chat-scanner-5d9", "uid": "u"}]}
    base.update(meta)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": base,
            "spec": {"serviceAccountName": "acme-chat-scanner", "containers": [{"name": "scanner", "image": "pd-scanner:1"}]}}


SCANNER = "system:serviceaccount:acme-prod:acme-chat-scanner"
OWN = "acme-chat-scanner-5d9-abcde"


def _annotated(**extra):
    p = _pod()
    p["metadata"]["annotations"] = {**p["metadata"]["annotations"], **extra}
    return p


POD_REPORT_CASES = [
    ("reports the served hash", SCANNER, OWN, _annotated(**{"promptdefenders.io/serving-bundle-hash": "sha256:a"}), True),
    ("reports a refusal", SCANNER, OWN, _annotated(**{"promptdefenders.io/bundle-error": "bad"}), True),
    ("another pod", SCANNER, "someone-else", _annotated(**{"promptdefenders.io/serving-bundle-hash": "sha256:a"}), False),
    ("a token without the pod-name claim", SCANNER, None, _annotated(**{"promptdefenders.io/serving-bundle-hash": "x"}), False),
    ("changes a label", SCANNER, OWN, _pod(labels={"app.kubernetes.io/name": "pd-scanner", "app": "hijack"}), False),
    ("changes another annotation", SCANNER, OWN, _annotated(**{"prometheus.io/scrape": "false"}), False),
    ("removes another annotation", SCANNER, OWN, _pod(annotations={}), False),
    ("drops the owner reference", SCANNER, OWN, _pod(ownerReferences=[]), False),
    ("not a scanner", "system:serviceaccount:acme-prod:default", "x", _pod(labels={}), None),
    # Its Role is in its own namespace, so RBAC refuses it before admission; not matched here.
    ("a scanner of another namespace", "system:serviceaccount:other:x-scanner", "x", _pod(labels={}), None),
]


def check_pod_report_policy(vap, where):
    import celpy

    env = celpy.Environment()

    def run(expr, act):
        return env.program(env.compile(expr)).evaluate(act)

    def cel_map(d):
        return celpy.celtypes.MapType({celpy.celtypes.StringType(k): v for k, v in d.items()})

    spec = vap["spec"]
    for name, user, pod_name, new, want in POD_REPORT_CASES:
        old = _pod()
        request = {"namespace": "acme-prod", "userInfo": {"username": user}}
        if pod_name is not None:
            request["userInfo"]["extra"] = {"authentication.kubernetes.io/pod-name": [pod_name]}
        act = {"request": celpy.json_to_cel(request), "object": celpy.json_to_cel(new),
               "oldObject": celpy.json_to_cel(old)}
        try:
            matched = all(bool(run(c["expression"], act)) for c in spec["matchConditions"])
            if not matched:
                check(want is None, f"{where}: pod-report policy {name}: not matched, want {want}")
                continue
            variables = {}
            for v in spec.get("variables", []):
                variables[v["name"]] = run(v["expression"], {**act, "variables": cel_map(variables)})
            act["variables"] = cel_map(variables)
            allowed = all(bool(run(v["expression"], act)) for v in spec["validations"])
        except Exception as e:  # a CEL error is a test failure, whatever its type
            fail(f"{where}: pod-report policy {name}: CEL error {e}")
            continue
        check(allowed == want, f"{where}: pod-report policy {name}: allowed={allowed}, want {want}")
    print(f"{where}: pod-report admission policy ran {len(POD_REPORT_CASES)} cases")


def env_map(container):
    return {e["name"]: e for e in container.get("env", [])}


def cmd_contract(name, rendered, namespace, golden):
    exp = EXPECT[name]
    where = name
    objs = [d for d in docs(rendered) if d.get("kind") != "CustomResourceDefinition"]
    for o in objs:
        labels = o["metadata"].get("labels", {})
        for key in ("app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/managed-by",
                    "app.kubernetes.io/part-of", "app.kubernetes.io/version", "helm.sh/chart"):
            check(key in labels, f"{where}: {o['kind']}/{o['metadata']['name']} lacks label {key}")

    dep = one(objs, "Deployment", where)
    check(dep["metadata"]["name"] == exp["prefix"], f"{where}: Deployment name {dep['metadata']['name']}")
    check(dep["metadata"].get("namespace") == namespace, f"{where}: Deployment namespace")
    spec = dep["spec"]
    check(spec["replicas"] == exp["replicas"], f"{where}: replicas {spec['replicas']}")
    pod = spec["template"]["spec"]
    sel = spec["selector"]["matchLabels"]
    check(all(spec["template"]["metadata"]["labels"].get(k) == v for k, v in sel.items()),
          f"{where}: pod labels do not match the selector")
    check(pod["serviceAccountName"] == exp["sa"], f"{where}: serviceAccountName {pod['serviceAccountName']}")
    psc = pod.get("securityContext", {})
    check(psc.get("runAsNonRoot") is True and psc.get("runAsUser") == 65532, f"{where}: pod runAsNonRoot/65532")
    check(psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", f"{where}: pod seccomp")
    (c,) = pod["containers"]
    check(c["image"] == exp["operator_image"], f"{where}: operator image {c['image']}")
    csc = c.get("securityContext", {})
    check(csc.get("runAsNonRoot") is True and csc.get("runAsUser") == 65532, f"{where}: container non-root 65532")
    check(csc.get("readOnlyRootFilesystem") is True, f"{where}: readOnlyRootFilesystem")
    check(csc.get("allowPrivilegeEscalation") is False, f"{where}: allowPrivilegeEscalation")
    check(csc.get("capabilities", {}).get("drop") == ["ALL"], f"{where}: capabilities drop ALL")
    check(csc.get("seccompProfile", {}).get("type") == "RuntimeDefault", f"{where}: container seccomp")
    check(c.get("resources", {}) != {} or name == "minimal", f"{where}: no resources")
    env = env_map(c)
    check(env.get("POD_NAME", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name",
          f"{where}: POD_NAME from the downward API")
    check(env.get("POD_NAMESPACE", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.namespace",
          f"{where}: POD_NAMESPACE from the downward API")
    check(env.get("PD_SCANNER_IMAGE", {}).get("value") == exp["scanner_image"], f"{where}: PD_SCANNER_IMAGE")
    check(env.get("PD_MONITORING_NAMESPACE", {}).get("value") == exp["monitoring_ns"], f"{where}: PD_MONITORING_NAMESPACE")
    check(env.get("PD_SHARED_NAMESPACE", {}).get("value") == exp.get("shared_ns", namespace), f"{where}: PD_SHARED_NAMESPACE")
    check(env.get("PD_API_SERVER_EGRESS", {}).get("value") == exp["egress"], f"{where}: PD_API_SERVER_EGRESS")
    ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    check(ports == {"metrics": 8081}, f"{where}: container ports {ports}")
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = c.get(probe, {}).get("httpGet", {})
        check(get.get("path") == path and ports.get(get.get("port")) == 8081, f"{where}: {probe} not {path} on 8081")
    args = c.get("args", [])
    if exp["leader"]:
        check(args == ["run"], f"{where}: args {args}")
        check(spec["strategy"]["type"] == "RollingUpdate", f"{where}: strategy")
    else:
        check(args == ["run", "--no-leader-election"], f"{where}: args {args}")
        check(spec["strategy"]["type"] == "Recreate", f"{where}: a single operator without a Lease must Recreate")
    if exp["default_spread"]:
        terms = pod.get("affinity", {}).get("podAntiAffinity", {}).get("preferredDuringSchedulingIgnoredDuringExecution", [])
        check(any(t["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
                  and t["podAffinityTerm"]["labelSelector"]["matchLabels"] == sel for t in terms),
              f"{where}: no soft anti-affinity on kubernetes.io/hostname")
        spread = pod.get("topologySpreadConstraints", [])
        check(any(s["topologyKey"] == "kubernetes.io/hostname" and s["labelSelector"]["matchLabels"] == sel
                  for s in spread), f"{where}: no topology spread over nodes")
    else:
        check("requiredDuringSchedulingIgnoredDuringExecution" in pod["affinity"]["podAntiAffinity"],
              f"{where}: affinity override not applied")
        check(pod["topologySpreadConstraints"][0]["whenUnsatisfiable"] == "DoNotSchedule",
              f"{where}: topologySpreadConstraints override not applied")

    pdbs = by_kind(objs, "PodDisruptionBudget")
    if exp["replicas"] > 1:
        check(len(pdbs) == 1 and pdbs[0]["spec"].get("maxUnavailable") == 1
              and pdbs[0]["spec"]["selector"]["matchLabels"] == sel, f"{where}: PDB")
    else:
        check(not pdbs, f"{where}: a PDB for a single replica")

    svc = one(objs, "Service", where)
    check(svc["spec"]["selector"] == sel, f"{where}: metrics Service selector")
    check(svc["spec"]["ports"] == [{"name": "metrics", "port": exp["port"], "targetPort": "metrics", "protocol": "TCP"}],
          f"{where}: metrics Service ports {svc['spec']['ports']}")
    sa = one(objs, "ServiceAccount", where)
    check(sa["metadata"]["name"] == exp["sa"] and sa["metadata"]["namespace"] == namespace, f"{where}: ServiceAccount")

    # RBAC: exactly the expected rules, bound to the ServiceAccount.
    cluster_roles = {c["metadata"]["name"]: c for c in by_kind(objs, "ClusterRole")}
    check(set(cluster_roles) == {exp["prefix"], f"{exp['prefix']}-view", f"{exp['prefix']}-edit"},
          f"{where}: ClusterRoles {sorted(cluster_roles)}")
    cr = cluster_roles.get(exp["prefix"], {})
    expected_cluster = dict(EXPECTED_CLUSTER_RULES)
    if exp.get("reports"):
        expected_cluster[("", "pods")] = {"list", "watch", "patch"}
    got = rules_map(cr.get("rules", []))
    for key in sorted(set(got) | set(expected_cluster)):
        check(got.get(key) == expected_cluster.get(key),
              f"{where}: ClusterRole {key}: {sorted(got.get(key, []))} != {sorted(expected_cluster.get(key, []))}")
    # Aggregated user roles (issue 13): read everything, write packs and policies, never Tenants.
    view = cluster_roles.get(f"{exp['prefix']}-view", {})
    edit = cluster_roles.get(f"{exp['prefix']}-edit", {})
    check(view.get("metadata", {}).get("labels", {}).get("rbac.authorization.k8s.io/aggregate-to-view") == "true",
          f"{where}: view role not aggregated")
    edit_labels = edit.get("metadata", {}).get("labels", {})
    check(edit_labels.get("rbac.authorization.k8s.io/aggregate-to-edit") == "true"
          and edit_labels.get("rbac.authorization.k8s.io/aggregate-to-admin") == "true",
          f"{where}: edit role not aggregated into edit and admin")
    vrules = rules_map(view.get("rules", []))
    check(all(v == {"get", "list", "watch"} for v in vrules.values())
          and ("promptdefenders.io", "tenants") in vrules, f"{where}: view role rules {vrules}")
    erules = rules_map(edit.get("rules", []))
    check(set(erules) == {("promptdefenders.io", "rulepacks"), ("promptdefenders.io", "scanpolicies")},
          f"{where}: edit role must not write Tenants or anything else: {sorted(erules)}")
    check(env.get("PD_SCANNER_REPORTS_SERVING", {}).get("value") == ("true" if exp.get("reports") else "false"),
          f"{where}: PD_SCANNER_REPORTS_SERVING")
    check(env.get("PD_SCANNER_IMAGE_ALLOW", {}).get("value") == exp.get("image_allow"),
          f"{where}: PD_SCANNER_IMAGE_ALLOW")
    vaps = by_kind(objs, "ValidatingAdmissionPolicy")
    check(len(vaps) == (1 if exp.get("reports") else 0), f"{where}: ValidatingAdmissionPolicy rendered={len(vaps)}")
    if vaps:
        bindings = by_kind(objs, "ValidatingAdmissionPolicyBinding")
        check(len(bindings) == 1 and bindings[0]["spec"]["policyName"] == vaps[0]["metadata"]["name"]
              and bindings[0]["spec"]["validationActions"] == ["Deny"], f"{where}: ValidatingAdmissionPolicyBinding")
        check_pod_report_policy(vaps[0], where)
    argocd = [o for o in by_kind(objs, "ConfigMap") if o["metadata"]["name"] == "argocd-cm"]
    check(len(argocd) == (1 if exp.get("argocd") else 0), f"{where}: argocd-cm rendered={len(argocd)}")
    if argocd:
        check(argocd[0]["metadata"]["namespace"] == "argocd", f"{where}: argocd-cm namespace")
        check_health(argocd[0], f"{where}: chart argocd-cm")
        fragment = yaml.safe_load((REPO / "config/gitops/argocd/argocd-cm-health.yaml").read_text())
        check(argocd[0]["data"] == fragment["data"], f"{where}: the chart's Argo CD health checks differ from config/gitops")
    subject = [{"kind": "ServiceAccount", "name": exp["sa"], "namespace": namespace}]
    crb = one(objs, "ClusterRoleBinding", where)
    check(crb["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": cr["metadata"]["name"]}
          and crb["subjects"] == subject, f"{where}: ClusterRoleBinding")
    roles = {r["metadata"]["name"]: r for r in by_kind(objs, "Role")}
    bindings = {b["metadata"]["name"]: b for b in by_kind(objs, "RoleBinding")}
    expected_roles = {}
    if exp["leader"]:
        expected_roles[f"{exp['prefix']}-leader-election"] = (namespace, EXPECTED_LEASE_RULES)
    if exp["egress"] == "auto":
        # Only `auto` reads the API server's addresses, and only in `default`.
        expected_roles[f"{exp['prefix']}-api-server-discovery"] = ("default", EXPECTED_DISCOVERY_RULES)
    check(set(roles) == set(expected_roles) and set(bindings) == set(expected_roles),
          f"{where}: Roles {sorted(roles)} / RoleBindings {sorted(bindings)} != {sorted(expected_roles)}")
    for role_name, (role_ns, rules) in expected_roles.items():
        role, rb = roles.get(role_name), bindings.get(role_name)
        if check(role is not None and rb is not None, f"{where}: Role/RoleBinding {role_name}"):
            check(role["metadata"]["namespace"] == role_ns == rb["metadata"]["namespace"],
                  f"{where}: {role_name} outside namespace {role_ns}")
            check(rules_map(role["rules"], with_names=True) == rules, f"{where}: {role_name} rules")
            check(rb["roleRef"]["name"] == role_name and rb["subjects"] == subject,
                  f"{where}: {role_name} binding")

    # What the operator applies (the golden render) must be within its permissions: every child
    # kind can be created and patched and is watchable, and the Role it gives scanners grants
    # nothing the operator lacks (RBAC escalation prevention would refuse that Role).
    for child in docs(golden):
        key = KIND_RESOURCE.get(child["kind"])
        if check(key is not None, f"golden: unexpected child kind {child['kind']}"):
            check(CHILD_VERBS <= got.get(key, set()), f"{where}: cannot apply/watch {child['kind']}")
        if child["kind"] == "Role":
            for r in child["rules"]:
                for g in r["apiGroups"]:
                    for res in r["resources"]:
                        check(set(r["verbs"]) <= got.get((g, res), set()),
                              f"{where}: the scanners' Role grants {r['verbs']} on {res}, which the operator lacks")

    # Optional objects.
    kinds = {o["kind"] for o in objs}
    for k in ("ServiceMonitor", "PodMonitor", "PrometheusRule"):
        check((k in kinds) == (k in exp["monitors"]), f"{where}: {k} rendered={k in kinds}")
    sm = by_kind(objs, "ServiceMonitor")
    if sm:
        check(sm[0]["spec"]["selector"]["matchLabels"] == sel, f"{where}: ServiceMonitor selects the operator")
        check(sm[0]["spec"]["endpoints"][0]["port"] == "metrics", f"{where}: ServiceMonitor port")
    dash = [o for o in by_kind(objs, "ConfigMap") if o["metadata"]["name"].endswith("-dashboard")]
    if exp["dashboard_ns"]:
        check(len(dash) == 1, f"{where}: dashboard ConfigMap")
        if dash:
            d = dash[0]
            check(d["metadata"]["namespace"] == exp["dashboard_ns"], f"{where}: dashboard namespace")
            check(d["metadata"]["labels"].get("grafana_dashboard") == "1", f"{where}: grafana_dashboard label")
            on_disk = json.loads((CHART / "files/grafana/prompt-defenders.json").read_text())
            check(json.loads(d["data"]["prompt-defenders.json"]) == on_disk, f"{where}: dashboard JSON differs")
    else:
        check(not dash, f"{where}: dashboard rendered")
    packs = by_kind(objs, "RulePack")
    # The sample baseline pack extends the learned pack, so both are installed together.
    samples = {}
    for f in ("learned-rulepack.yaml", "baseline-rulepack.yaml"):
        doc = yaml.safe_load((REPO / "config/samples" / f).read_text())
        samples[doc["metadata"]["name"]] = doc
    for name in samples:
        got = sorted(p["metadata"]["namespace"] for p in packs if p["metadata"]["name"] == name)
        check(got == exp["packs"], f"{where}: RulePack {name} namespaces")
    for p in packs:
        sample = samples.get(p["metadata"]["name"])
        check(sample is not None, f"{where}: unexpected RulePack {p['metadata']['name']}")
        if sample is not None:
            check(p["spec"] == sample["spec"], f"{where}: the rendered {p['metadata']['name']} RulePack's spec differs from the sample")
    finish(f"contract ({name})")


# ── metrics: what the sources register ───────────────────────────────────────────────────────
def metric_catalog():
    """{series name: set(labels)} from the prometheus-client registrations in the sources.
    Counters are exposed with `_total`, histograms as `_bucket` (+`le`), `_sum`, `_count`."""
    catalog = {}
    for src in ("scanner/src/serve/metrics.rs", "scanner/src/serve/usage/mod.rs", "operator/src/metrics.rs"):
        text = (REPO / src).read_text()
        label_sets = {m.group(1): set(re.findall(r"(\w+)\s*:\s*String", m.group(2)))
                      for m in re.finditer(r"struct (\w+)\s*\{([^}]*)\}", text)}
        fields = dict(re.findall(r"^\s*(\w+):\s*((?:Family<[^\n]*>)|Histogram|Counter|Gauge),\s*$",
                                 text[re.search(r"pub struct \w*Metrics\b", text).start():], re.M))
        for name, var in re.findall(r'register\(\s*"(\w+)",\s*"[^"]*",\s*(\w+)\.clone\(\)', text):
            ty = fields.get(var)
            if ty is None:
                fail(f"{src}: cannot tell the type of metric {name} ({var})")
                continue
            fam = re.match(r"Family<(\w+),\s*(\w+)", ty)
            labels, kind = (label_sets.get(fam.group(1), set()), fam.group(2)) if fam else (set(), ty)
            if kind == "Counter":
                catalog[f"{name}_total"] = labels
            elif kind == "Histogram":
                catalog[f"{name}_bucket"] = labels | {"le"}
                catalog[f"{name}_sum"] = labels
                catalog[f"{name}_count"] = labels
            else:
                catalog[name] = labels
    return catalog


# Target labels Prometheus adds (Kubernetes service discovery, the chart's PodMonitor relabelings).
TARGET_LABELS = {"namespace", "pod", "container", "endpoint", "service", "job", "instance", "scanpolicy", "tenant"}


def cmd_promql_exprs(out, *rendered):
    """Collects every PromQL expression: alert rules and dashboard targets (Grafana variables
    replaced by values of the same type)."""
    exprs = []
    for path in rendered:
        for d in docs(path):
            if d.get("kind") == "PrometheusRule":
                for g in d["spec"]["groups"]:
                    for r in g["rules"]:
                        exprs.append({"where": f"{path}: {r.get('alert') or r.get('record')}", "expr": r["expr"]})
    dash = json.loads((CHART / "files/grafana/prompt-defenders.json").read_text())
    subst = {"$__rate_interval": "5m", "$__range": "6h", "$__interval": "1m"}
    for p in dash["panels"]:
        for t in p.get("targets", []):
            e = t["expr"]
            for k, v in subst.items():
                e = e.replace(k, v)
            exprs.append({"where": f"dashboard: {p['title']} ({t['refId']})", "expr": e})
    for v in dash["templating"]["list"]:
        if v["type"] == "query":
            m = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", v["query"]["query"])
            if check(m is not None, f"dashboard variable {v['name']}: not label_values(selector, label)"):
                exprs.append({"where": f"dashboard variable {v['name']}", "expr": m.group(1),
                              "labels": [m.group(2)]})
    pathlib.Path(out).write_text(json.dumps(exprs))
    print(f"{len(exprs)} PromQL expressions")
    finish("collect PromQL")


def cmd_promql_check(parsed):
    catalog = metric_catalog()
    print(f"{len(catalog)} series registered by the sources")
    for e in json.loads(pathlib.Path(parsed).read_text()):
        where = e["where"]
        check(not e["errors"], f"{where}: PromQL syntax error at offsets {e['errors']}: {e['expr']}")
        check(e["metrics"], f"{where}: selects no metric")
        known = set(TARGET_LABELS)
        for m in e["metrics"]:
            if check(m in catalog, f"{where}: metric {m} is not registered by scanner or operator"):
                known |= catalog[m]
        for label in e["labels"]:
            check(label in known, f"{where}: label {label} exists on none of {e['metrics']}")
    finish("PromQL")


# ── dashboard ────────────────────────────────────────────────────────────────────────────────
def cmd_dashboard(path):
    dash = json.loads(pathlib.Path(path).read_text())
    for key in ("uid", "title", "panels", "templating", "schemaVersion"):
        check(key in dash, f"dashboard: no {key}")
    ids = [p["id"] for p in dash["panels"]]
    check(len(ids) == len(set(ids)), "dashboard: duplicate panel ids")
    names = {v["name"] for v in dash["templating"]["list"]}
    check("datasource" in names, "dashboard: no datasource variable")
    titles = [p["title"] for p in dash["panels"]]
    for want in ("Scans by verdict", "Top rules", "Scan latency (engine) p50 / p95 / p99",
                 "Bundle reloads by result", "Reconciles and errors by kind"):
        check(want in titles, f"dashboard: no panel {want!r}")
    boxes = []
    for p in dash["panels"]:
        g = p["gridPos"]
        check(0 <= g["x"] and g["x"] + g["w"] <= 24, f"dashboard: panel {p['title']!r} wider than the grid")
        for q in boxes:
            overlap = (g["x"] < q["x"] + q["w"] and q["x"] < g["x"] + g["w"]
                       and g["y"] < q["y"] + q["h"] and q["y"] < g["y"] + g["h"])
            check(not overlap, f"dashboard: panel {p['title']!r} overlaps another")
        boxes.append(g)
        if p["type"] != "row":
            check(p.get("datasource", {}).get("uid") == "${datasource}", f"dashboard: {p['title']!r} datasource")
            check(p.get("targets"), f"dashboard: {p['title']!r} has no query")
            for t in p.get("targets", []):
                for var in re.findall(r"\$(\w+)", t["expr"]):
                    check(var.startswith("__") or var in names, f"dashboard: {p['title']!r} uses unknown ${var}")
    finish("dashboard JSON")


# ── GitOps examples ──────────────────────────────────────────────────────────────────────────
LUA_CASES = [
    ("no status", {}, "Progressing"),
    ("ready", {"status": {"observedGeneration": 2, "conditions": [
        {"type": "Ready", "status": "True", "reason": "Ready", "message": "serving", "observedGeneration": 2}]}}, "Healthy"),
    ("rolling out", {"status": {"observedGeneration": 2, "conditions": [
        {"type": "Ready", "status": "False", "reason": "ScannersNotReady", "message": "waiting", "observedGeneration": 2}]}},
     "Progressing"),
    ("bad packs", {"status": {"observedGeneration": 2, "conditions": [
        {"type": "Available", "status": "True", "reason": "ScannersReady", "message": "2 ready"},
        {"type": "Ready", "status": "False", "reason": "RulePacksInvalid", "message": "rule `x`: bad", "observedGeneration": 2}]}},
     "Degraded"),
    ("compile failed", {"status": {"conditions": [
        {"type": "Ready", "status": "False", "reason": "CompileFailed", "message": "rule `y`"}]}}, "Degraded"),
    ("stale status", {"status": {"observedGeneration": 1, "conditions": [
        {"type": "Ready", "status": "True", "reason": "Ready", "message": "old", "observedGeneration": 1}]}}, "Progressing"),
    ("stale condition", {"status": {"observedGeneration": 2, "conditions": [
        {"type": "Ready", "status": "True", "reason": "Ready", "message": "old", "observedGeneration": 1}]}}, "Progressing"),
    ("unknown", {"status": {"conditions": [{"type": "Ready", "status": "Unknown", "reason": "Pending"}]}}, "Progressing"),
    ("no ready condition", {"status": {"conditions": [{"type": "Compiled", "status": "True"}]}}, "Progressing"),
    # kstatus conditions (issue 13): Stalled wins over a Ready reason the check does not know.
    ("stalled", {"status": {"observedGeneration": 2, "conditions": [
        {"type": "Ready", "status": "False", "reason": "ApplyFailed", "message": "422", "observedGeneration": 2},
        {"type": "Reconciling", "status": "False", "reason": "Reconciled", "message": ""},
        {"type": "Stalled", "status": "True", "reason": "ApplyFailed", "message": "422"}]}}, "Degraded"),
    ("retrying", {"status": {"observedGeneration": 2, "conditions": [
        {"type": "Ready", "status": "False", "reason": "ApplyFailed", "message": "500", "observedGeneration": 2},
        {"type": "Reconciling", "status": "True", "reason": "ApplyFailed", "message": "500"},
        {"type": "Stalled", "status": "False", "reason": "NotStalled", "message": ""}]}}, "Progressing"),
    ("bundle not served yet", {"status": {"observedGeneration": 2, "conditions": [
        {"type": "Ready", "status": "False", "reason": "BundleNotServed", "message": "1/2", "observedGeneration": 2}]}},
     "Progressing"),
    ("progress deadline", {"status": {"observedGeneration": 2, "conditions": [
        {"type": "Ready", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "timed out",
         "observedGeneration": 2}]}}, "Degraded"),
]


def run_lua(script, obj):
    import lupa

    lua = lupa.LuaRuntime(unpack_returned_tuples=True)

    def to_lua(v):
        if isinstance(v, dict):
            return lua.table_from({k: to_lua(x) for k, x in v.items()})
        if isinstance(v, list):
            return lua.table_from([to_lua(x) for x in v])
        return v

    lua.globals().obj = to_lua(obj)
    hs = lua.execute(script)
    return (hs["status"], hs["message"]) if hs is not None else (None, None)


# ── docs/src/install.md "Without Helm": the documented commands work with `kubectl apply -f`, no `-n` ─────
# Kinds that have no namespace; every other rendered object must name one, or `kubectl apply -f`
# puts it in the current context's namespace (and `-n` is refused by the objects in `default`).
CLUSTER_SCOPED = {"CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding", "Namespace",
                  "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding",
                  "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration", "PriorityClass"}


def check_namespaced(path):
    """Every namespaced object in `path` names its namespace; returns how many objects there are."""
    objs = docs(path)
    for d in objs:
        if d.get("kind") not in CLUSTER_SCOPED:
            check(d.get("metadata", {}).get("namespace"),
                  f"{path}: {d.get('kind')}/{d.get('metadata', {}).get('name')} has no namespace: "
                  "`kubectl apply -f` of the rendered file would put it in the context's namespace")
    return objs


def cmd_namespaces(*paths):
    for path in paths:
        check_namespaced(path)
    finish(f"every namespaced object names its namespace ({len(paths)} rendered files)")


def shell_commands(block):
    """The commands of a ```sh block, comments dropped and continuation lines joined."""
    import shlex

    out, lines = [], iter(block.splitlines())
    for line in lines:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        while line.endswith("\\"):
            line = line[:-1] + " " + next(lines).strip()
        out.append(shlex.split(line, comments=True))
    return out


def cmd_readme_without_helm(helm, kubectl, kubeconfig, readme, workdir):
    """The section's commands: deploy/install.yaml and the rendered file applied without -n, the
    `helm template` run here, and every kubectl command replayed with --dry-run=client against
    the discovery stub (KUBECONFIG)."""
    import os

    text = pathlib.Path(readme).read_text()
    m = re.search(r"^## Without Helm on the cluster: `kubectl apply`\n(.*?)^## ", text, re.S | re.M)
    if not check(m, f"{readme}: no section 'Without Helm on the cluster'"):
        finish("install chapter: Without Helm")
    blocks = re.findall(r"^```sh\n(.*?)^```", m.group(1), re.S | re.M)
    cmds = [c for b in blocks for c in shell_commands(b)]
    check(cmds, f"{readme}: no ```sh block under 'Without Helm on the cluster'")
    check(["kubectl", "apply", "-f", "deploy/install.yaml"] in cmds, f"{readme}: no `kubectl apply -f deploy/install.yaml`")
    templates = [c for c in cmds if c[:2] == ["helm", "template"]]
    check(len(templates) == 1, f"{readme}: expected one `helm template` command, found {len(templates)}")
    files = {"deploy/install.yaml": "deploy/install.yaml"}
    for argv in templates:
        check(">" in argv, f"{readme}: `helm template` does not write a file")
        out = argv[argv.index(">") + 1] if ">" in argv else "pd-operator.yaml"
        args = [a for a in argv[2 : argv.index(">") if ">" in argv else len(argv)]]
        check("--namespace" in args or "-n" in args, f"{readme}: `helm template` without --namespace")
        rendered = pathlib.Path(workdir, out)
        files[out] = str(rendered)
        with rendered.open("w") as f:
            proc = subprocess.run([helm, "template", *args], stdout=f, stderr=subprocess.PIPE, text=True, cwd=REPO)
        if not check(proc.returncode == 0, f"{readme}: `helm template {' '.join(args)}` failed: {proc.stderr}"):
            continue
        objs = check_namespaced(rendered)
        in_default = [f"{d['kind']}/{d['metadata']['name']}" for d in objs if d.get("metadata", {}).get("namespace") == "default"]
        print(f"install chapter's helm template: {len(objs)} objects, all namespaced ones with a namespace; "
              f"in default: {', '.join(in_default) or 'none'}")
    for out in files:
        of_file = [c for c in cmds if c[:1] == ["kubectl"] and "apply" in c and out in c]
        check(len(of_file) == 1, f"{readme}: expected one `kubectl apply -f {out}`, found {len(of_file)}")
        for c in of_file:
            check(not ({"-n", "--namespace"} & set(c)) and not any(a.startswith("--namespace=") for a in c),
                  f"{readme}: `{' '.join(c)}`: -n is refused for the objects in `default`")
    # Replay: client-side dry runs (which cannot be server-side) against the stub.
    env = dict(os.environ, KUBECONFIG=kubeconfig)
    replayed = 0
    for c in cmds:
        if c[:1] != ["kubectl"]:
            continue
        argv = [kubectl] + [files.get(a, a) for a in c[1:] if a != "--server-side"] + ["--dry-run=client"]
        if "apply" in c:
            argv.append("--validate=false")
        proc = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, env=env)
        replayed += 1
        check(proc.returncode == 0, f"{readme}: `{' '.join(c)}` fails a client dry run: {proc.stderr.strip()}")
    print(f"install chapter's kubectl commands: {replayed} replayed with --dry-run=client against the discovery stub")
    finish("install chapter: Without Helm")


# There is no public repository yet: the examples point at this placeholder, and each file says
# to replace it (docs/src/install.md, "Argo CD and Flux"). A real-looking URL would be a wrong step.
GITOPS_REPO_PLACEHOLDER = "https://git.example.com/YOUR-ORG/prompt-defenders.git"


def cmd_gitops(root):
    import pydantic  # noqa: F401  (models below need it)

    fluxmods = {
        ("source.toolkit.fluxcd.io/v1", "GitRepository"): "cloudcoil.models.fluxcd.source.v1",
        ("helm.toolkit.fluxcd.io/v2", "HelmRelease"): "cloudcoil.models.fluxcd.helm.v2",
        ("kustomize.toolkit.fluxcd.io/v1", "Kustomization"): "cloudcoil.models.fluxcd.kustomize.v1",
    }
    strict_models("cloudcoil.models.fluxcd.source.v1")
    files = sorted(pathlib.Path(root).rglob("*.y*ml"))
    check(files, f"{root}: no YAML files")
    seen = set()
    for f in files:
        try:
            ds = docs(f)
        except yaml.YAMLError as e:
            fail(f"{f}: not well-formed YAML: {e}")
            continue
        check(ds, f"{f}: no document")
        for d in ds:
            key = (d.get("apiVersion"), d.get("kind"))
            seen.add(key[1])
            where = f"{f}: {key[1]}/{d.get('metadata', {}).get('name')}"
            url = (d.get("spec", {}).get("source", {}).get("repoURL") if key[1] == "Application"
                   else d.get("spec", {}).get("url") if key[1] == "GitRepository" else None)
            if url is not None:
                check(url == GITOPS_REPO_PLACEHOLDER, f"{where}: repository URL {url} is not the placeholder {GITOPS_REPO_PLACEHOLDER}")
                check("Replace the URL below with\n# your fork or mirror" in f.read_text(), f"{where}: the file does not say to replace the URL")
            if key in fluxmods:
                import importlib

                validate_model(getattr(importlib.import_module(fluxmods[key]), key[1]), d, where)
                spec = d["spec"]
                if key[1] == "Kustomization":
                    check((REPO / spec["path"]).is_dir(), f"{where}: path {spec['path']} is not a directory")
                if key[1] == "HelmRelease":
                    check((REPO / spec["chart"]["spec"]["chart"] / "Chart.yaml").is_file(), f"{where}: chart path")
                    check(spec["install"].get("crds") == "Create" and spec["upgrade"].get("crds") == "CreateReplace",
                          f"{where}: CRD policy")
                    check_values(spec.get("values", {}), where)
            elif key == ("argoproj.io/v1alpha1", "Application"):
                check_application(d, where)
            elif key == ("kustomize.config.k8s.io/v1beta1", "Kustomization"):
                for r in d.get("resources", []):
                    check((f.parent / r).exists(), f"{where}: resource {r} does not exist")
            elif key == ("v1", "ConfigMap") and d["metadata"]["name"] == "argocd-cm":
                check_health(d, where)
            else:
                fail(f"{where}: unexpected object in the GitOps examples")
    for kind in ("Application", "GitRepository", "HelmRelease", "Kustomization"):
        check(kind in seen, f"{root}: no {kind} example")
    finish("GitOps examples")


def check_values(values, where):
    """HelmRelease / Application values must pass the chart's values.schema.json too."""
    import jsonschema

    schema = json.loads((CHART / "values.schema.json").read_text())
    merged = copy.deepcopy(yaml.safe_load((CHART / "values.yaml").read_text()))

    def merge(a, b):
        for k, v in b.items():
            if isinstance(v, dict) and isinstance(a.get(k), dict):
                merge(a[k], v)
            else:
                a[k] = v
    merge(merged, values)
    for e in jsonschema.Draft7Validator(schema).iter_errors(merged):
        fail(f"{where}: values: {'/'.join(map(str, e.absolute_path))}: {e.message}")


def check_application(d, where):
    allowed_top = {"apiVersion", "kind", "metadata", "spec"}
    check(set(d) <= allowed_top, f"{where}: unknown top-level keys {set(d) - allowed_top}")
    spec = d["spec"]
    check(set(spec) <= {"project", "source", "sources", "destination", "syncPolicy", "ignoreDifferences",
                        "info", "revisionHistoryLimit"}, f"{where}: unknown spec keys")
    src = spec["source"]
    check(set(src) <= {"repoURL", "targetRevision", "path", "chart", "helm", "directory", "kustomize", "plugin", "ref"},
          f"{where}: unknown source keys")
    check((REPO / src["path"]).is_dir(), f"{where}: source path {src['path']} is not a directory")
    check(set(spec["destination"]) <= {"server", "name", "namespace"} and spec["destination"].get("namespace"),
          f"{where}: destination")
    opts = spec["syncPolicy"]["syncOptions"]
    check("ServerSideApply=true" in opts, f"{where}: ServerSideApply=true missing")
    check(all(re.fullmatch(r"[A-Za-z]+=(true|false|[A-Za-z]+)", o) for o in opts), f"{where}: malformed syncOptions {opts}")
    if "helm" in src:
        helm = src["helm"]
        check(set(helm) <= {"releaseName", "valuesObject", "values", "valueFiles", "parameters", "skipCrds",
                            "passCredentials", "ignoreMissingValueFiles", "version", "namespace", "kubeVersion",
                            "apiVersions", "skipSchemaValidation", "skipTests", "fileParameters"},
              f"{where}: unknown helm keys")
        check(helm.get("skipCrds") is False, f"{where}: the chart's CRDs must be synced")
        check((REPO / src["path"] / "Chart.yaml").is_file(), f"{where}: no chart at {src['path']}")
        check_values(helm.get("valuesObject", {}), where)


def check_health(cm, where):
    for kind in ("ScanPolicy", "RulePack", "Tenant"):
        key = f"resource.customizations.health.promptdefenders.io_{kind}"
        script = cm["data"].get(key)
        if not check(script, f"{where}: no {key}"):
            continue
        for name, extra, want in LUA_CASES:
            obj = {"apiVersion": "promptdefenders.io/v1alpha1", "kind": kind,
                   "metadata": {"name": "x", "generation": 2}, **copy.deepcopy(extra)}
            try:
                status, message = run_lua(script, obj)
            except Exception as e:  # a Lua error is a test failure, whatever its type
                fail(f"{where}: {kind} {name}: Lua error {e}")
                continue
            check(status == want and isinstance(message, str) and message,
                  f"{where}: {kind} {name}: got ({status}, {message!r}), want {want}")
    print(f"{where}: Lua health check ran {len(LUA_CASES)} cases x 3 kinds")


def cmd_kind_up_dry_run(log, kubectl, kubeconfig):
    """kind-up.sh's own kubectl apply commands, as its --dry-run printed them (its kind
    context swapped for the discovery stub's), each through a client dry run."""
    env = dict(os.environ, KUBECONFIG=kubeconfig)
    n = 0
    for line in open(log):
        if not line.startswith("+ kubectl "):
            continue
        argv = shlex.split(line[2:])
        i = argv.index("--context")
        del argv[i:i + 2]
        if "apply" not in argv:
            continue
        proc = subprocess.run([kubectl, *argv[1:], "--dry-run=client", "--validate=false"], capture_output=True, text=True, env=env)
        if proc.returncode:
            sys.exit(f"FAIL: {line.strip()}: {proc.stderr.strip()}")
        n += 1
    if n < 4:
        sys.exit(f"FAIL: only {n} kubectl apply commands in kind-up.sh's dry run")
    print(f"hack/kind-up.sh: its {n} kubectl apply commands pass a client dry run")


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"split": cmd_split, "monitoring": cmd_monitoring, "contract": cmd_contract,
     "promql-exprs": cmd_promql_exprs, "promql-check": cmd_promql_check,
     "dashboard": cmd_dashboard, "gitops": cmd_gitops, "namespaces": cmd_namespaces,
     "readme-without-helm": cmd_readme_without_helm,
     "kind-up-dry-run": cmd_kind_up_dry_run}[cmd](*args)
