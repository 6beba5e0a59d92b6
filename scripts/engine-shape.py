#!/usr/bin/env python3
"""The engine's shape, as issue "Architecture II" measures it: the largest files, the
longest functions in exec/, and the import circles among files.

An import edge A -> B is drawn when file A names an item defined in file B (`crate::` and
`super::` paths and `use` groups; re-exports followed to the file that defines the item;
comments and `#[cfg(test)] mod tests` left out); a circle is a strongly connected
component of more than one file. Run from the repository root:

    python3 scripts/engine-shape.py [engine/src]
"""

import os, re, sys
root = sys.argv[1] if len(sys.argv) > 1 else 'engine/src'
files = {}
for dp, _, fs in os.walk(root):
    for f in fs:
        if f.endswith('.rs'):
            p = os.path.join(dp, f)
            rel = os.path.relpath(p, root)[:-3]
            parts = rel.split(os.sep)
            if parts[-1] in ('mod', 'lib', 'main'):
                parts = parts[:-1]
            files[tuple(parts)] = p
reexports = {}  # (module, item) -> module defining it
for m, p in files.items():
    for mt in re.finditer(r'\bpub(?:\([^)]*\))? use (?:self::)?(\w+)::(?:(\w+)|\{([^}]*)\});', open(p).read()):
        sub, one, group = mt.group(1), mt.group(2), mt.group(3)
        if m + (sub,) not in files:
            continue
        for item in ([one] if one else group.split(',')):
            item = item.strip().split(' ')[0]
            if item:
                reexports[(m, item)] = m + (sub,)
def resolve(mod, path):
    # longest prefix of path that is a file module; a re-exported item goes to its file
    for n in range(len(path), -1, -1):
        if tuple(path[:n]) in files:
            m = tuple(path[:n])
            while n < len(path) and (m, path[n]) in reexports:
                m = reexports[(m, path[n])]
            return m
    return None
edges = {m: set() for m in files}
for m, p in files.items():
    text = open(p).read()
    text = re.split(r'\n#\[cfg\(test\)\]\nmod tests', text)[0]
    text = re.sub(r'//[^\n]*', '', text)
    is_modrs = p.endswith('mod.rs') or p.endswith('lib.rs')
    here = list(m) if is_modrs else list(m)  # module path
    for mt in re.finditer(r'\b(crate|super)((?:::\w+)+)', text):
        head, rest = mt.group(1), mt.group(2).split('::')[1:]
        if head == 'crate':
            path = rest
        else:
            base = list(m)[:-1]
            path = base + rest
            # super::super
            while path and path[len(base)-0:len(base)+1] == ['super']:
                break
        # handle chained super
        if head == 'super':
            base = list(m)[:-1]
            while rest and rest[0] == 'super':
                base = base[:-1]; rest = rest[1:]
            path = base + rest
        # expand `{a, b}` groups crudely: only first segment path
        t = resolve(m, path)
        if t is not None and t != m and t != ():
            edges[m].add(t)
    for mt in re.finditer(r'\buse (crate|super)::((?:\w+::)*)\{([^;]*)\};', text, re.S):
        head, prefix, group = mt.group(1), mt.group(2), mt.group(3)
        pre = [x for x in prefix.split('::') if x]
        base = [] if head == 'crate' else list(m)[:-1]
        for item in re.split(r',', group):
            item = item.strip().split('::')[0].split(' ')[0].strip('{} \n')
            if not item or item == 'self':
                t = resolve(m, base + pre)
            else:
                t = resolve(m, base + pre + [item])
            if t is not None and t != m and t != ():
                edges[m].add(t)
# SCC (Tarjan)
index = {}; low = {}; stack = []; on = set(); sccs = []; i = [0]
sys.setrecursionlimit(10000)
def strong(v):
    index[v] = low[v] = i[0]; i[0] += 1; stack.append(v); on.add(v)
    for w in edges[v]:
        if w not in index:
            strong(w); low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop(); on.discard(w); comp.append(w)
            if w == v: break
        sccs.append(comp)
for v in edges:
    if v not in index: strong(v)
name = lambda m: '/'.join(m) or 'lib'
sizes = sorted(((sum(1 for _ in open(p)), p) for p in files.values()), reverse=True)
print('largest files:', ', '.join(f'{os.path.relpath(p, root)} {n}' for n, p in sizes[:6]))
lengths = []
for m, p in files.items():
    if m[:1] != ('exec',):
        continue
    lines = open(p).read().split('\n')
    for i, l in enumerate(lines):
        f = re.match(r'^(\s*)(pub(\([^)]*\))? )?(async )?fn (\w+)', l)
        if f and not l.rstrip().endswith(';'):
            end = next((j for j in range(i, len(lines)) if lines[j] == f.group(1) + '}'), i)
            lengths.append((end - i + 1, f'{os.path.relpath(p, root)}::{f.group(5)}'))
lengths.sort(reverse=True)
print('longest functions in exec/:', ', '.join(f'{n} {f}' for n, f in lengths[:5]))
circles = [c for c in sccs if len(c) > 1]
print("import circles:", "none" if not circles else len(circles))
for c in sccs:
    if len(c) > 1:
        print('circle:', ', '.join(sorted(name(x) for x in c)))
        for a in c:
            for b in edges[a]:
                if b in c: print('   ', name(a), '->', name(b))
