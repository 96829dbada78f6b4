"""The README's "Step by step on kind" against e2e/run.sh and e2e/kind-images.sh (run by .ci/e2e).

The walkthrough is the path a new user follows by hand and run.sh is the path CI runs; nobody
runs the walkthrough here (no Docker), so this keeps the two from drifting apart: the cluster
configuration and node image, the image script and tag, the Helm release, namespace and values,
the samples' namespace, Secret and policy, the curl image and the scanner's address must be the
ones run.sh uses, and the tool versions the README names must be the pinned ones.

Usage: python readme_walkthrough.py   (from the repository root; needs PyYAML)
"""

import re
import shlex
import sys

import yaml

FAILURES = []

# What run.sh sets on the chart that the walkthrough leaves out on purpose, and why.
RUN_SH_ONLY_VALUES = {
    "operator.scannerReportsServing=true": "the suite's readiness test needs it",
}


def fail(msg):
    FAILURES.append(msg)
    print("FAIL", msg)


def check(cond, msg):
    if not cond:
        fail(msg)
    return cond


def section(text, heading):
    """The text under a Markdown heading, up to the next heading of the same or a higher level."""
    level = len(heading.split(" ", 1)[0])
    lines = text.splitlines(keepends=True)
    try:
        start = lines.index(heading + "\n") + 1
    except ValueError:
        sys.exit(f"error: README.md has no section {heading!r}")
    out, fenced = [], False
    for line in lines[start:]:
        if line.startswith("```"):
            fenced = not fenced
        m = re.match(r"(#+) ", line)
        if not fenced and m and len(m.group(1)) <= level:
            break
        out.append(line)
    return "".join(out)


def commands(block):
    """Shell commands of a ```sh block: comments dropped, continuation lines joined, split like
    the shell would; a here-document's body is returned as the command's `stdin`."""
    out = []
    lines = iter(block.splitlines())
    for line in lines:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        while line.endswith("\\"):
            line = line[:-1] + " " + next(lines).strip()
        heredoc = re.search(r"<<'(\w+)'\s*$", line)
        stdin = None
        if heredoc:
            body = []
            for l in lines:
                if l == heredoc.group(1):
                    break
                body.append(l)
            stdin = "\n".join(body)
            line = line[: heredoc.start()]
        out.append((shlex.split(line, comments=True), stdin))
    return out


def option(argv, name):
    """The value of `--name VALUE` / `--name=VALUE` / `-n VALUE` in argv (the last one), else None."""
    value = None
    for i, a in enumerate(argv):
        if a == name and i + 1 < len(argv):
            value = argv[i + 1]
        elif a.startswith(name + "="):
            value = a[len(name) + 1 :]
    return value


def options(argv, name):
    return [argv[i + 1] for i, a in enumerate(argv) if a == name and i + 1 < len(argv)]


def find(cmds, prefix, where):
    found = [(argv, stdin) for argv, stdin in cmds if argv[: len(prefix)] == prefix]
    check(found, f"{where}: no `{' '.join(prefix)}` command")
    return found


def pinned(script, text, name):
    m = re.search(rf"^{name}=(\S+)$", text, re.M)
    if not m:
        sys.exit(f"error: {script} sets no {name}")
    value = m.group(1)
    default = re.fullmatch(r"\$\{\w+:-(.+)\}", value)  # ${OVERRIDE:-pinned}
    return default.group(1) if default else value


def main():
    readme = open("README.md").read()
    run_sh = open("e2e/run.sh").read()
    kind_images = open("e2e/kind-images.sh").read()
    walk = section(readme, "### Step by step on kind")
    blocks = re.findall(r"^```sh\n(.*?)^```", walk, re.S | re.M)
    check(blocks, "README: Step by step on kind has no ```sh block")
    cmds = [c for b in blocks for c in commands(b)]
    where = "README Step by step on kind"

    node_image = pinned("e2e/run.sh", run_sh, "NODE_IMAGE")
    kind_version = pinned("e2e/run.sh", run_sh, "KIND_VERSION")
    curl_image = pinned("e2e/run.sh", run_sh, "CURL_IMAGE")
    image_tag = pinned("e2e/run.sh", run_sh, "IMAGE_TAG")
    release = pinned("e2e/run.sh", run_sh, "RELEASE")
    release_ns = pinned("e2e/run.sh", run_sh, "RELEASE_NS")
    samples_ns = pinned("e2e/run.sh", run_sh, "SAMPLES_NS")
    policy = pinned("e2e/run.sh", run_sh, "SAMPLE_POLICY")
    secret = pinned("e2e/run.sh", run_sh, "KEYS_SECRET")
    script_tag = pinned("e2e/kind-images.sh", kind_images, "tag")

    # 1. The cluster: kind-config.yaml and run.sh's node image.
    (argv, _), *_ = find(cmds, ["kind", "create", "cluster"], where) or [([], None)]
    cluster = option(argv, "--name")
    check(cluster, f"{where}: kind create cluster without --name (step 2 loads into a named cluster)")
    check(option(argv, "--config") == "kind-config.yaml", f"{where}: kind create cluster must use --config kind-config.yaml")
    check(option(argv, "--image") == node_image, f"{where}: kind create cluster --image {option(argv, '--image')} is not run.sh's NODE_IMAGE {node_image}")
    check(re.search(r"kind create cluster --name \"\$CLUSTER\" --config kind-config.yaml --image \"\$NODE_IMAGE\"", run_sh),
          "run.sh no longer creates its cluster from kind-config.yaml with NODE_IMAGE")

    # 2. Images: the script run.sh calls, into that cluster, with the tag the chart is given.
    for argv, _ in find(cmds, ["e2e/kind-images.sh"], where):
        check(option(argv, "--cluster") == cluster, f"{where}: e2e/kind-images.sh --cluster {option(argv, '--cluster')} is not the cluster created ({cluster})")
        tag = option(argv, "--tag") or script_tag
    check(re.search(r"^  e2e/kind-images\.sh --cluster \"\$CLUSTER\" --tag \"\$IMAGE_TAG\"", run_sh, re.M),
          "run.sh does not build and load through e2e/kind-images.sh")
    check(script_tag == image_tag, f"e2e/kind-images.sh defaults to tag {script_tag}, run.sh to {image_tag}")
    check("REGISTRY=ghcr.io/prompt-defenders" in kind_images, "e2e/kind-images.sh builds under another repository than the chart's default")

    # 3. The chart: run.sh's release, namespace and values.
    values = yaml.safe_load(open("charts/prompt-defenders/values.yaml"))
    run_helm = re.search(r"^helm upgrade --install \"\$RELEASE\" charts/prompt-defenders(.*?)(?<!\\)\n", run_sh, re.S | re.M)
    check(run_helm, "run.sh: no `helm upgrade --install \"$RELEASE\" charts/prompt-defenders`")
    run_argv = shlex.split(run_helm.group(1).replace("\\\n", " ").replace('"$IMAGE_TAG"', image_tag)) if run_helm else []
    run_sets = set(options(run_argv, "--set"))
    check(option(run_argv, "--namespace") == '$RELEASE_NS', "run.sh: helm is not given --namespace \"$RELEASE_NS\"")
    for argv, _ in find(cmds, ["helm", "install"], where):
        check(argv[2:4] == [release, "charts/prompt-defenders"], f"{where}: helm install {argv[2:4]}, run.sh installs {release} from charts/prompt-defenders")
        check(option(argv, "--namespace") == release_ns, f"{where}: helm --namespace {option(argv, '--namespace')}, run.sh uses {release_ns}")
        check("--wait" in argv and "--create-namespace" in argv, f"{where}: helm install needs --create-namespace and --wait")
        sets = set(options(argv, "--set"))
        want = run_sets - set(RUN_SH_ONLY_VALUES)
        check(sets == want, f"{where}: helm --set {sorted(sets)}; run.sh sets {sorted(want)} (besides {sorted(RUN_SH_ONLY_VALUES)})")
        check(f"operator.image.tag={tag}" in sets and f"scanner.image.tag={tag}" in sets,
              f"{where}: the chart must run the images step 2 loaded (tag {tag})")
        for s in sets:
            node = values
            for key in s.split("=", 1)[0].split("."):
                if not check(isinstance(node, dict) and key in node, f"{where}: --set {s}: no such value in values.yaml"):
                    break
                node = node[key]

    # 4. The samples: run.sh's namespace, Secret, manifests and policy.
    check(["kubectl", "create", "namespace", samples_ns] in [a for a, _ in cmds], f"{where}: no `kubectl create namespace {samples_ns}`")
    key_ids = []
    for argv, _ in find(cmds, ["kubectl", "-n", samples_ns, "create", "secret", "generic"], where):
        check(argv[6:7] == [secret], f"{where}: the API key Secret is {argv[6:7]}, the sample Tenant and run.sh use {secret}")
        key_ids += [v.split("=", 1)[0] for v in options(argv, "--from-literal") + [a[len("--from-literal="):] for a in argv if a.startswith("--from-literal=")]]
    check(key_ids, f"{where}: the Secret has no key")
    check(["kubectl", "apply", "-n", samples_ns, "-f", "config/samples/"] in [a for a, _ in cmds],
          f"{where}: the samples are not applied as run.sh does (kubectl apply -n {samples_ns} -f config/samples/)")
    check('kubectl apply -n "$SAMPLES_NS" -f config/samples/' in run_sh, "run.sh no longer applies config/samples/ into $SAMPLES_NS")
    waits = [a for a, _ in cmds if a[:1] == ["kubectl"] and "wait" in a and f"scanpolicy/{policy}" in a]
    check(waits and all(option(a, "-n") == samples_ns for a in waits), f"{where}: no wait for scanpolicy/{policy} in {samples_ns}")

    # 5. The client Pod: run.sh's curl image, the Secret's key, the scanner's Service.
    pods = [yaml.safe_load(stdin) for a, stdin in cmds if stdin and a[:1] == ["kubectl"] and "apply" in a]
    check(len(pods) == 1, f"{where}: expected one client Pod applied from a here-document, found {len(pods)}")
    for pod in pods:
        c = pod["spec"]["containers"][0]
        check(c["image"] == curl_image, f"{where}: the client Pod runs {c['image']}, run.sh preloads {curl_image}")
        ref = c["env"][0]["valueFrom"]["secretKeyRef"]
        check(ref["name"] == secret and ref["key"] in key_ids, f"{where}: the client Pod reads key {ref} which step 4 does not create")
        check(pod["metadata"]["labels"].get("promptdefenders.io/client") == "true", f"{where}: the client Pod lacks the sample Tenant's client label")
        check(f"http://{policy}-scanner.{samples_ns}.svc:8080/v1/scan" in " ".join(c["args"]), f"{where}: the client does not call {policy}-scanner.{samples_ns}")
    for image in re.findall(r"--image=(\S+)", walk):
        check(image == curl_image, f"{where}: --image={image}, run.sh preloads {curl_image}")

    # 6. Tool versions named in the section's introduction are the pinned ones.
    intro = section(readme, "## Installing on Kubernetes")
    check(f"{kind_version} is what the e2e suite pins" in intro, f"README Installing on Kubernetes: kind {kind_version} (run.sh's pin) is not named")
    chart_helm = re.search(r"^HELM_SHA256=\S+ # helm (v[\d.]+)$", open(".ci/chart").read(), re.M)
    check(chart_helm and f"Helm {chart_helm.group(1)} (offline)" in intro, "README Installing on Kubernetes: .ci/chart's Helm version is not the one named")
    e2e_helm = re.search(r"azure/setup-helm@v\d+\n\s+with:\n\s+version: (v[\d.]+)", open(".github/workflows/e2e.yml").read())
    check(e2e_helm and f"with Helm {e2e_helm.group(1)}" in intro, "README Installing on Kubernetes: the e2e workflow's Helm version is not the one named")

    if FAILURES:
        sys.exit(f"README walkthrough: {len(FAILURES)} disagreement(s) with e2e/run.sh")
    print(f"ok: README walkthrough agrees with run.sh ({len(cmds)} commands: cluster {cluster}, "
          f"{node_image.split('@')[0]}, images tag {tag}, release {release} in {release_ns}, "
          f"samples in {samples_ns}, {curl_image})")


if __name__ == "__main__":
    main()
