#!/usr/bin/env python3
"""Offline link check of the docs: README.md, SECURITY.md, CONTRIBUTING.md and docs/src/**/*.md (run by .ci/run).

For every Markdown link and image outside code (inline `[text](target)` and reference
definitions `[name]: target`):
  - http(s) and mailto links are skipped: no network here;
  - a relative path must exist, resolved from the file that links it;
  - a `#fragment` must be a heading id of the target Markdown file (or of the same file),
    computed as mdBook does: the heading's text, lowercased, whitespace to `-`, every character
    that is not alphanumeric, `-` or `_` dropped; a repeated id gets `-1`, `-2`, ...; an explicit
    `{#id}` wins. Headings brought in by `{{#include FILE[:ANCHOR]}}` count.
It also fails when docs/src/SUMMARY.md names a chapter file that does not exist (mdBook would
create it empty). Failures are printed as FILE:LINE: message; exit 1 if there are any.

Usage: python3 .ci/linkcheck.py   (from anywhere; standard library only)
"""

import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^ {0,3}(```|~~~)")
HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
INCLUDE = re.compile(r"\{\{#include\s+([^}\s:]+)(?::([A-Za-z_][\w-]*))?\s*\}\}")
INLINE = re.compile(r"!?\[((?:[^\[\]]|\[[^\]]*\])*)\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
REFDEF = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$", re.M)


def blank_code(text):
    """The text with fenced blocks and inline code spans blanked (same length, same newlines)."""
    out, fenced = [], False
    for line in text.splitlines(keepends=True):
        if FENCE.match(line):
            fenced = not fenced
            out.append("\n" if line.endswith("\n") else "")
        elif fenced:
            out.append("\n" if line.endswith("\n") else "")
        else:
            out.append(re.sub(r"(`+)(.+?)\1", lambda m: m.group(1) + "x" * len(m.group(2)) + m.group(1), line))
    return "".join(out)


def heading_id(text):
    explicit = re.search(r"\{#([\w-]+)[^}]*\}\s*$", text)
    if explicit:
        return explicit.group(1)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)   # links: their text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").replace("*", "")
    return "".join(c.lower() if c.isalnum() or c in "-_" else "-" if c.isspace() else "" for c in text)


def expand(path, anchor=None, depth=0):
    """A Markdown file's lines with {{#include}}s expanded (mdBook's ANCHOR regions too)."""
    lines = path.read_text().splitlines()
    if anchor:
        try:
            start = next(i for i, l in enumerate(lines) if re.search(rf"ANCHOR:\s*{anchor}\b", l))
            end = next(i for i, l in enumerate(lines) if re.search(rf"ANCHOR_END:\s*{anchor}\b", l))
        except StopIteration:
            return []
        lines = lines[start + 1:end]
    out = []
    for line in lines:
        m = INCLUDE.search(line)
        if m and depth < 5 and (path.parent / m.group(1)).is_file():
            out += expand((path.parent / m.group(1)).resolve(), m.group(2), depth + 1)
        elif "ANCHOR:" not in line and "ANCHOR_END:" not in line:
            out.append(line)
    return out


_ids = {}


def ids(path):
    if path not in _ids:
        found, seen, fenced = set(), {}, False
        for line in expand(path):
            if FENCE.match(line):
                fenced = not fenced
                continue
            m = None if fenced else HEADING.match(line)
            if m:
                base = heading_id(m.group(2))
                n = seen.get(base, 0)
                seen[base] = n + 1
                found.add(base if n == 0 else f"{base}-{n}")
        _ids[path] = found
    return _ids[path]


def check_file(path, failures):
    text = blank_code(path.read_text())
    targets = [(m.start(2), m.group(2)) for m in INLINE.finditer(text)]
    targets += [(m.start(1), m.group(1)) for m in REFDEF.finditer(text)]
    for pos, target in targets:
        line = text.count("\n", 0, pos) + 1
        where = f"{path.relative_to(ROOT)}:{line}"
        if not target or re.match(r"^(https?|mailto|ftp):", target):
            continue
        file_part, _, fragment = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if file_part and not dest.exists():
            failures.append(f"{where}: broken link {target!r}: {dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest} does not exist")
            continue
        if fragment:
            if dest.suffix != ".md" or not dest.is_file():
                failures.append(f"{where}: link {target!r}: a #fragment only into a Markdown file is checked, {file_part!r} is not one")
            elif fragment not in ids(dest):
                near = sorted(i for i in ids(dest) if fragment[:4] in i)[:5]
                failures.append(f"{where}: broken anchor {target!r}: no heading with id {fragment!r} in "
                                f"{dest.relative_to(ROOT)}" + (f" (similar: {', '.join(near)})" if near else ""))
    return len(targets)


def main():
    src = ROOT / "docs" / "src"
    files = [ROOT / "README.md", ROOT / "SECURITY.md", ROOT / "CONTRIBUTING.md"] + sorted(src.rglob("*.md"))
    failures, links = [], 0
    for f in files:
        links += check_file(f, failures)
    summary = src / "SUMMARY.md"
    for i, line in enumerate(summary.read_text().splitlines(), 1):
        for m in re.finditer(r"\]\(([^)]+)\)", line):
            if not (src / m.group(1)).is_file():
                failures.append(f"docs/src/SUMMARY.md:{i}: chapter {m.group(1)!r} does not exist")
    for f in failures:
        print(f, file=sys.stderr)
    if failures:
        sys.exit(f"linkcheck: {len(failures)} broken link(s) in {len(files)} files")
    print(f"ok: linkcheck: {links} links in {len(files)} files, none broken")


if __name__ == "__main__":
    main()
