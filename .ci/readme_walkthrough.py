"""The kind walkthroughs against hack/kind-up.sh (run by .ci/e2e).

There are two, with the same steps: README.md's "Five minutes on a kind cluster" and the install
chapter's "Step by step on kind" (docs/src/install.md). The walkthrough is the script: each names
it, lists its numbered steps, and says how to scan your own prompt and clean up. Nobody runs the script here (no Docker; .ci/chart validates
its --dry-run output, e2e/images_test.sh its calls against stubs, the e2e workflow runs it for
real), so this keeps the prose from drifting away from it:
  - each section is at most 30 lines and links hack/kind-up.sh; the README's links the install
    chapter;
  - its numbered list is the script's `step N '...'` lines, word for word (backticks aside), in
    order, numbered 1..N;
  - every option the section shows exists in the script, and the defaults it names (cluster,
    tag) and the cleanup's cluster are the script's;
  - the tool versions the install chapter's introduction names are the pinned ones, and the
    Helm minimum is HELM_MIN_VERSION in hack/kind-up.sh, named nowhere else;
  - README.md is at most 200 lines.

Usage: python readme_walkthrough.py   (from the repository root; needs PyYAML)
"""

import re
import shlex
import sys

MAX_LINES = 30
README_MAX_LINES = 200
FAILURES = []


def fail(msg):
    FAILURES.append(msg)
    print("FAIL", msg)


def check(cond, msg):
    if not cond:
        fail(msg)
    return cond


def section(text, heading, name):
    """The text under a Markdown heading, up to the next heading of the same or a higher level."""
    level = len(heading.split(" ", 1)[0])
    lines = text.splitlines(keepends=True)
    try:
        start = lines.index(heading + "\n") + 1
    except ValueError:
        sys.exit(f"error: {name} has no section {heading!r}")
    out, fenced = [], False
    for line in lines[start:]:
        if line.startswith("```"):
            fenced = not fenced
        m = re.match(r"(#+) ", line)
        if not fenced and m and len(m.group(1)) <= level:
            break
        out.append(line)
    return "".join(out)


def pinned(script, text, name):
    m = re.search(rf"^{name}=(\S+)$", text, re.M)
    if not m:
        sys.exit(f"error: {script} sets no {name}")
    value = m.group(1).strip('"')
    default = re.fullmatch(r"\$\{\w+:-(.+)\}", value)  # ${OVERRIDE:-pinned}
    return default.group(1) if default else value


WALKTHROUGHS = [
    # file, heading, how it links the script
    ("README.md", "## Five minutes on a kind cluster", "[`hack/kind-up.sh`](hack/kind-up.sh)"),
    ("docs/src/install.md", "## Step by step on kind", "[`hack/kind-up.sh`](../../hack/kind-up.sh)"),
]


def check_walkthrough(path, heading, link, script):
    """One walkthrough section against the script; returns (steps, lines, cluster, tag)."""
    where = f"{path} {heading.lstrip('# ')}"
    walk = section(open(path).read(), heading, path)

    lines = walk.rstrip("\n").splitlines()
    check(len(lines) <= MAX_LINES, f"{where}: {len(lines)} lines, at most {MAX_LINES}")
    check(link in walk, f"{where}: no link {link}")
    if path == "README.md":
        check("(docs/src/install.md)" in walk, f"{where}: no link to the install chapter, docs/src/install.md")

    # The steps: the script's `step N '...'` lines and the section's numbered list.
    steps = [(int(n), t) for n, t in re.findall(r"^ *step (\d+) '(.*)'$", script, re.M)]
    check(steps and [n for n, _ in steps] == list(range(1, len(steps) + 1)),
          f"hack/kind-up.sh: steps numbered {[n for n, _ in steps]}, expected 1..N")
    listed = [(int(n), t.replace("`", "")) for n, t in re.findall(r"^(\d+)\. (.*)$", walk, re.M)]
    for (n, want), got in zip(steps, listed + [None] * len(steps)):
        if got is None:
            fail(f"{where}: step {n} missing: {want!r}")
        elif got != (n, want):
            fail(f"{where}: step {got[0]} is {got[1]!r}; hack/kind-up.sh prints step {n} {want!r}")
    check(len(listed) <= len(steps), f"{where}: {len(listed)} numbered steps, the script has {len(steps)}")

    # The commands: the script with options it has, the cleanup of its default cluster.
    blocks = re.findall(r"^```sh\n(.*?)^```", walk, re.S | re.M)
    cmds = [shlex.split(l, comments=True) for b in blocks for l in b.splitlines() if l.strip()]
    runs = [c for c in cmds if c[:2] == ["bash", "hack/kind-up.sh"]]
    check(["bash", "hack/kind-up.sh"] in runs, f"{where}: no plain `bash hack/kind-up.sh`")
    check(any("--scan" in c for c in runs), f"{where}: no `bash hack/kind-up.sh --scan '...'` for the reader's own prompt")
    known = {o for pattern in re.findall(r"^ +(-[-\w |]+)\)", script, re.M) for o in pattern.split(" | ")}
    shown = {o for l in walk.splitlines() if "hack/kind-up.sh" in l for o in re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", l)}
    for opt in shown:
        check(opt in known, f"{where}: option {opt} is not one hack/kind-up.sh takes ({sorted(known)})")
    cluster = pinned("hack/kind-up.sh", script, "cluster")
    tag = pinned("hack/kind-up.sh", script, "tag")
    check(f"--cluster NAME ({cluster})" in walk and f"--tag TAG ({tag})" in walk,
          f"{where}: the defaults named are not the script's (cluster {cluster}, tag {tag})")
    check(["kind", "delete", "cluster", "--name", cluster] in cmds, f"{where}: no `kind delete cluster --name {cluster}`")

    return steps, lines, cluster, tag


def main():
    script = open("hack/kind-up.sh").read()
    for path, heading, link in WALKTHROUGHS:
        steps, lines, cluster, tag = check_walkthrough(path, heading, link, script)
        print(f"{path}: {len(steps)} steps, {len(lines)} lines")

    # The README stays an entry point (issue 15: it once held 1,169 lines of benchmarks, build
    # internals and CI timings); the rest belongs in the book under docs/.
    readme_lines = len(open("README.md").read().splitlines())
    check(readme_lines <= README_MAX_LINES, f"README.md: {readme_lines} lines, at most {README_MAX_LINES}: move detail to docs/src/")

    # The tool versions named in the install chapter's introduction are the pinned ones.
    chapter = "docs/src/install.md"
    intro = section(open(chapter).read(), "# Installing on Kubernetes", chapter).split("\n## ")[0]
    kind_version = pinned("hack/kind-up.sh", script, "KIND_VERSION")
    check(f"{kind_version} is what the e2e suite pins" in intro, f"{chapter} introduction: kind {kind_version} (hack/kind-up.sh's pin) is not named")
    chart_helm = re.search(r"^HELM_SHA256=\S+ # helm (v[\d.]+)$", open(".ci/chart").read(), re.M)
    check(chart_helm and f"Helm {chart_helm.group(1)} (offline)" in intro, f"{chapter} introduction: .ci/chart's Helm version is not the one named")
    e2e_helm = re.search(r"azure/setup-helm@v\d+\n\s+with:\n\s+version: (v[\d.]+)", open(".github/workflows/e2e.yml").read())
    check(e2e_helm and f"with Helm {e2e_helm.group(1)}" in intro, f"{chapter} introduction: the e2e workflow's Helm version is not the one named")
    # Helm: the chart's minimum lives in hack/kind-up.sh alone (which enforces it); the chapter
    # names it, shows how to install the e2e workflow's version, and nothing else repeats it.
    helm_min = pinned("hack/kind-up.sh", script, "HELM_MIN_VERSION")
    check(f"[Helm](https://helm.sh/docs/intro/install/) {helm_min} or newer" in intro,
          f"{chapter} introduction: the Helm minimum named is not HELM_MIN_VERSION {helm_min} (hack/kind-up.sh)")
    if e2e_helm:
        v = e2e_helm.group(1)
        check(f"https://get.helm.sh/helm-{v}-linux-amd64.tar.gz" in intro and f"helm version --short    # {v}+" in intro,
              f"{chapter} introduction: the Helm install commands do not install the e2e workflow's Helm {v}")
    short = helm_min.removeprefix("v").removesuffix(".0")
    for path in ("README.md", "hack/render-install.sh", "e2e/run.sh", "docs/src/contributing/e2e.md"):
        check(not re.search(rf"[Hh]elm {re.escape(short)}(\.0)? or newer", open(path).read()),
              f"{path} repeats the Helm minimum: name docs/src/install.md instead (HELM_MIN_VERSION in hack/kind-up.sh)")

    if FAILURES:
        sys.exit(f"kind walkthroughs: {len(FAILURES)} disagreement(s) with hack/kind-up.sh")
    print(f"ok: the kind walkthroughs are hack/kind-up.sh ({len(steps)} steps, "
          f"cluster {cluster}, tag {tag}, kind {kind_version})")


if __name__ == "__main__":
    main()
