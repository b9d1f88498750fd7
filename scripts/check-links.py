#!/usr/bin/env python3
"""Every relative link in the docs resolves: `make test` runs this.

Reads README.md, docs/*.md, RELIABILITY.md, BENCHMARKS.md, clients/*/README.md
and examples/*/README.md. Each link `[text](path)`, `![alt](path)` or
`[label]: path` outside code must name a file or folder of the repository;
`path#anchor` (or `#anchor` alone, in the same file) into a Markdown file
must name one of its headings, slugged as GitHub slugs them. External links
(any `scheme:`) are not checked. Exits 1 and lists every broken link.
"""
import glob
import os
import re
import sys
import unicodedata
from urllib.parse import unquote

ROOT = os.path.realpath(os.path.join(os.path.dirname(__file__), ".."))
DOCS = ["README.md", "docs/*.md", "RELIABILITY.md", "BENCHMARKS.md", "clients/*/README.md", "examples/*/README.md"]

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")
ATX = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")
# [text](dest "title"), text may hold one level of brackets; ![alt](dest) too.
INLINE = re.compile(r"\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*(<[^>]*>|[^)\s]*)(?:\s+(?:\"[^\"]*\"|'[^']*'|\([^)]*\)))?\s*\)")
REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)")
HTML_ANCHOR = re.compile(r"<a\s[^>]*?(?:name|id)\s*=\s*[\"']([^\"']+)[\"']", re.I)
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def prose_lines(text):
    """(line number, line) of the lines outside fenced code blocks."""
    fence = None
    for number, line in enumerate(text.split("\n"), 1):
        marker = FENCE.match(line)
        if fence is None:
            if marker:
                fence = marker.group(1)
            else:
                yield number, line
        elif marker and marker.group(1)[0] == fence[0] and len(marker.group(1)) >= len(fence) \
                and not marker.group(2).strip():
            fence = None


def plain(heading):
    """A heading's text as rendered: code spans keep their content, links
    their text, emphasis and HTML tags go."""
    text = CODE_SPAN.sub(lambda m: m.group(2).strip(), heading)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"<[^>]+>", "", text)
    return text.replace("*", "")


def slug(text):
    """GitHub's anchor for a heading (github-slugger): lower case, anything
    but letters, marks, numbers, `_`, `-` and spaces dropped, spaces to `-`."""
    kept = []
    for char in text.lower():
        category = unicodedata.category(char)
        if char in " -_" or category[0] in "LMN":
            kept.append(char)
    return "".join(kept).replace(" ", "-")


def anchors(path, cache={}):
    if path not in cache:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        found, seen = set(), {}
        previous, previous_number = "", 0
        for number, line in prose_lines(text):
            heading = None
            atx = ATX.match(line)
            if atx:
                heading = atx.group(2)
            elif (SETEXT.match(line) and previous_number == number - 1 and previous.strip()
                  and not previous.lstrip().startswith(("|", "-", "*", ">", "#"))):
                heading = previous.strip()
            if heading is not None:
                base = slug(plain(heading))
                count = seen.get(base, 0)
                seen[base] = count + 1
                found.add(base if count == 0 else f"{base}-{count}")
            found.update(HTML_ANCHOR.findall(line))
            previous, previous_number = line, number
        cache[path] = found
    return cache[path]


def links(text):
    """(line number, destination) of every link outside code."""
    for number, line in prose_lines(text):
        line = CODE_SPAN.sub("", line)
        for match in INLINE.finditer(line):
            yield number, match.group(1)
        reference = REFERENCE.match(line)
        if reference:
            yield number, reference.group(1)


def broken(doc, destination):
    """Why a link does not resolve, or None."""
    destination = destination.strip("<>")
    if not destination or SCHEME.match(destination):
        return None
    target, _, anchor = destination.partition("#")
    target = unquote(target.split("?")[0])
    if target:
        base = ROOT if target.startswith("/") else os.path.dirname(doc)
        path = os.path.realpath(os.path.join(base, target.lstrip("/")))
        if not (path == ROOT or path.startswith(ROOT + os.sep)):
            return "points outside the repository"
        if not os.path.exists(path):
            return "no such file"
    else:
        path = doc
    if anchor and path.endswith(".md") and os.path.isfile(path):
        if unquote(anchor) not in anchors(path):
            return f"no heading #{anchor} in {os.path.relpath(path, ROOT)}"
    return None


def main():
    docs = sorted({os.path.join(ROOT, p) for pattern in DOCS for p in glob.glob(os.path.join(ROOT, pattern))})
    checked, failures = 0, []
    for doc in docs:
        with open(doc, encoding="utf-8") as f:
            text = f.read()
        for number, destination in links(text):
            checked += 1
            why = broken(doc, destination)
            if why:
                failures.append(f"{os.path.relpath(doc, ROOT)}:{number}: ({destination}) {why}")
    for failure in failures:
        print(f"broken link: {failure}", file=sys.stderr)
    if failures:
        print(f"doc links: {len(failures)} of {checked} broken", file=sys.stderr)
        return 1
    print(f"doc links: {checked} links in {len(docs)} files resolve")
    return 0


if __name__ == "__main__":
    sys.exit(main())
