#!/usr/bin/env python3
"""Finds import circles between the source files of each crate of the workspace.

A file uses another when it names an item of it: a `use` of `crate::…`, `super::…`,
`self::…` or of a child module, or such a path written inline in code. Paths resolve to
the deepest module that is a file (`a/b.rs` or `a/b/mod.rs`), so `use super::Calls` in
`calls/leg.rs` is an edge to `calls/mod.rs` and `use super::leg::run` one to
`calls/leg.rs`. Comments (doc links included) and string literals are ignored; a parent
declaring `mod child;` is ownership, not use. Test code (`#[cfg(test)]` modules, inline or in
their own files, and `#[cfg(test)]` imports) is left out, as cargo-modules leaves it out
unless asked: tests may reach anything they exercise. Circles are the strongly connected
components of that graph with more than one file.

    .ci/import-cycles.py [CRATE_DIR...]     # default: every crate of the workspace

A crate with floors (FLOORS below) is also checked for imports that go up a floor.

Prints each circle and each upward import and exits 1 when there is one; prints the edge
count otherwise.
Written here because the Rust tools that draw module graphs (cargo-modules) need the
crate built by their own rustc-based driver, too slow for every CI run on 2 cores.
"""

import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CRATES = ["ivm-sipd/src", "ivm-media/src", "ivm-smsc/src", "tests"]
# The floors of a crate, lowest first: a file may use its own floor and those below.
FLOORS = {"ivm-sipd/src": ["stack", "store", "config", "services", "app"]}

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


def strip(src):
    """Source without comments and string/char literals (kept the same length per line)."""
    out = []
    i, n = 0, len(src)
    while i < n:
        c = src[i]
        if src.startswith("//", i):
            j = src.find("\n", i)
            i = n if j < 0 else j
        elif src.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if src.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif src.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    if src[i] == "\n":
                        out.append("\n")
                    i += 1
        elif c == "r" and re.match(r'r#*"', src[i:i + 10]) and (i == 0 or not re.match(r"\w", src[i - 1])):
            hashes = re.match(r'r(#*)"', src[i:]).group(1)
            end = src.find('"' + hashes, i + 2 + len(hashes))
            i = n if end < 0 else end + 1 + len(hashes)
            out.append('""')
        elif c == '"':
            i += 1
            while i < n and src[i] != '"':
                i += 2 if src[i] == "\\" else 1
            i += 1
            out.append('""')
        elif c == "'" and re.match(r"'(\\.|[^\\'])'", src[i:i + 4]) or re.match(r"'\\u\{[0-9a-fA-F]+\}'", src[i:i + 12]):
            m = re.match(r"'(\\u\{[0-9a-fA-F]+\}|\\.|[^\\'])'", src[i:])
            i += len(m.group(0))
            out.append("' '")
        else:
            out.append(c)
            i += 1
    return "".join(out)


def modules(src_dir):
    """Module path (tuple) -> file, for every .rs file under src_dir."""
    mods = {}
    for dirpath, dirnames, filenames in os.walk(src_dir):
        dirnames[:] = [d for d in dirnames if d not in ("target", "node_modules", "fuzz")]
        for f in filenames:
            if not f.endswith(".rs"):
                continue
            rel = os.path.relpath(os.path.join(dirpath, f), src_dir)
            parts = rel[:-3].split(os.sep)
            if rel == "main.rs" and os.path.exists(os.path.join(src_dir, "lib.rs")):
                continue  # the binary: a separate crate over the library
            if parts[-1] in ("mod", "lib", "main"):
                parts = parts[:-1]
            mods[tuple(parts)] = rel
    return mods


def expand_use(tree):
    """`a::{b, c::{d, e}}` -> [a::b, a::c::d, a::c::e] (as lists of segments)."""
    tree = re.sub(r"\s+", "", tree)
    # Top-level split on commas outside braces.
    def split(s):
        parts, depth, cur = [], 0, ""
        for ch in s:
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            if ch == "," and depth == 0:
                parts.append(cur)
                cur = ""
            else:
                cur += ch
        if cur:
            parts.append(cur)
        return parts

    out = []
    for part in split(tree):
        brace = part.find("{")
        if brace >= 0 and part.endswith("}"):
            prefix = part[:brace].rstrip(":")
            for sub in expand_use(part[brace + 1:-1]):
                out.append(([s for s in prefix.split("::") if s] if prefix else []) + sub)
        else:
            name = re.sub(r"as" + IDENT + "$", "", part) if re.search(r"as" + IDENT + "$", part) and "::" in part else part
            out.append([s for s in name.split("::") if s])
    return out


def resolve(path, here, mods, exports=None, depth=0):
    """The file module that defines what `path` (written in module `here`) names, or None if
    external. A name re-exported by a module (`pub use child::Item`) resolves to where the
    item is defined."""
    if not path:
        return None
    head = path[0]
    if head == "crate":
        absolute = list(path[1:])
    elif head == "self":
        absolute = list(here) + path[1:]
    elif head == "super":
        base = list(here)
        rest = list(path)
        while rest and rest[0] == "super":
            if not base:
                return None
            base.pop()
            rest.pop(0)
        absolute = base + rest
    elif tuple(here) + (head,) in mods:
        absolute = list(here) + list(path)
    else:
        return None
    # Deepest prefix that is a file, then through its re-exports.
    for k in range(len(absolute), -1, -1):
        module = tuple(absolute[:k])
        if module in mods:
            if exports and depth < 8 and k < len(absolute):
                target = exports.get(module, {}).get(absolute[k])
                if target is not None:
                    resolved = resolve(target + absolute[k + 1:], list(module), mods, exports, depth + 1)
                    if resolved is not None:
                        return resolved
            return module
    return None


def reexports(mods, src_dir):
    """Module -> {name: path}, for every `pub use` (any visibility) of each module."""
    out = {}
    for here, rel in mods.items():
        with open(os.path.join(src_dir, rel), encoding="utf-8") as f:
            code = strip(f.read())
        names = {}
        for m in re.finditer(r"\bpub(?:\([^)]*\))?\s+use\s+([^;]+);", code):
            for p in expand_use(m.group(1)):
                if p and p[-1] != "*":
                    names[p[-1]] = p
        out[here] = names
    return out


TEST_ITEM = re.compile(r"#\[cfg\(test\)\]\s*(?:pub(?:\([^)]*\))?\s+)?(mod\s+(%s)\s*(;|\{)|use\s+[^;]+;)" % IDENT)


def without_tests(code):
    """The code with its `#[cfg(test)]` inline modules and imports blanked out."""
    while True:
        m = TEST_ITEM.search(code)
        if not m:
            return code
        end = m.end()
        if m.group(3) == "{":
            depth = 1
            while end < len(code) and depth:
                depth += {"{": 1, "}": -1}.get(code[end], 0)
                end += 1
        code = code[:m.start()] + re.sub(r"[^\n]", " ", code[m.start():end]) + code[end:]


def test_modules(mods, src_dir):
    """Module paths declared `#[cfg(test)] mod name;` (in their own files), with descendants."""
    out = set()
    for here, rel in mods.items():
        with open(os.path.join(src_dir, rel), encoding="utf-8") as f:
            code = strip(f.read())
        for m in TEST_ITEM.finditer(code):
            if m.group(3) == ";":
                out.add(tuple(here) + (m.group(2),))
    return {m for m in mods if any(m[:len(t)] == t for t in out)}


def inline_modules(code):
    """(start, end, name) of every inline `mod name { … }` block of a file."""
    spans = []
    for m in re.finditer(r"\bmod\s+(%s)\s*\{" % IDENT, code):
        depth, i = 1, m.end()
        while i < len(code) and depth:
            if code[i] == "{":
                depth += 1
            elif code[i] == "}":
                depth -= 1
            i += 1
        spans.append((m.end(), i, m.group(1)))
    return spans


def scope_at(spans, pos):
    """The inline modules enclosing `pos`, outermost first."""
    return [name for start, end, name in sorted(spans) if start <= pos < end]


def edges_of(mods, src_dir):
    for t in test_modules(mods, src_dir):
        del mods[t]
    edges = {m: set() for m in mods}
    exports = reexports(mods, src_dir)
    for here, rel in mods.items():
        with open(os.path.join(src_dir, rel), encoding="utf-8") as f:
            code = without_tests(strip(f.read()))
        spans = inline_modules(code)
        paths = []  # (path, the module it is written in)
        for m in re.finditer(r"(\bpub(?:\([^)]*\))?\s+)?\buse\s+([^;]+);", code):
            if m.group(1):
                continue  # a re-export is the module's facade, resolved through above
            scope = list(here) + scope_at(spans, m.start())
            paths.extend((p, scope) for p in expand_use(m.group(2)))
        # Inline paths, outside the `use` statements read above.
        code = re.sub(r"\buse\s+[^;]+;", lambda m: re.sub(r"[^\n]", " ", m.group(0)), code)
        children = [m[-1] for m in mods if len(m) == len(here) + 1 and m[:len(here)] == here]
        heads = ["crate", "super", "self"] + children
        for m in re.finditer(r"(?<![\w:])((?:%s)(?:::%s)+)" % ("|".join(map(re.escape, heads)), IDENT), code):
            paths.append((m.group(1).split("::"), list(here) + scope_at(spans, m.start())))
        for p, scope in paths:
            target = resolve(p, scope, mods, exports)
            if target is not None and target != here:
                edges[here].add(target)
    return edges


def cycles(edges):
    """Strongly connected components with more than one node (Tarjan, iterative)."""
    index, low, on, stack, out = {}, {}, set(), [], []
    counter = [0]
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on.add(root)
        while work:
            node, it = work[-1]
            advanced = False
            for nxt in it:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter[0]
                    counter[0] += 1
                    stack.append(nxt)
                    on.add(nxt)
                    work.append((nxt, iter(sorted(edges[nxt]))))
                    advanced = True
                    break
                if nxt in on:
                    low[node] = min(low[node], index[nxt])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == node:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def main(argv):
    dirs = argv[1:] or [os.path.join(ROOT, c) for c in CRATES]
    found = 0
    for d in dirs:
        mods = modules(d)
        edges = edges_of(mods, d)
        name = os.path.relpath(d, ROOT)
        circles = cycles(edges)
        for comp in circles:
            found += 1
            files = [mods[m] for m in comp]
            print(f"{name}: import circle of {len(comp)} files: {', '.join(files)}")
            members = set(comp)
            for m in comp:
                inside = sorted(mods[t] for t in edges[m] if t in members)
                print(f"    {mods[m]} -> {', '.join(inside)}")
        floors = FLOORS.get(os.path.relpath(d, ROOT), [])
        rank = {f: i for i, f in enumerate(floors)}
        upward = [
            (mods[a], mods[b])
            for a, targets in edges.items()
            for b in targets
            if a and b and a[0] in rank and b[0] in rank and rank[b[0]] > rank[a[0]]
        ]
        for a, b in sorted(upward):
            found += 1
            print(f"{name}: {a} imports {b}, a floor above it ({' < '.join(floors)})")
        if not circles and not upward:
            count = sum(len(v) for v in edges.values())
            extra = f", floors {' < '.join(floors)} respected" if floors else ""
            print(f"{name}: {len(mods)} files, {count} use edges, no import circle{extra}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
