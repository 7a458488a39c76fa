"""Read `perf script` text (comm, tid, [time,] then one frame per line, blank line between
samples): the samples of threads whose comm starts with a prefix, each as (time or None,
frames leaf first). The analyses beside it (leaf.py, chain.py, under.py, sub.py, catup.py,
phase45.py) import it."""


def samples(path, prefix):
    cur, t, frames = None, None, []
    for line in open(path, errors="replace"):
        if not line.strip():
            if cur and cur.startswith(prefix) and frames:
                yield t, frames
            cur, t, frames = None, None, []
        elif not line.startswith(("\t", " ")):
            p = line.split()
            cur, frames = p[0], []
            t = float(p[2].rstrip(":")) if len(p) > 2 and p[2].rstrip(":").replace(".", "").isdigit() else None
        else:
            p = line.split(None, 1)
            frames.append(p[1].strip() if len(p) > 1 else "?")
    if cur and cur.startswith(prefix) and frames:
        yield t, frames
