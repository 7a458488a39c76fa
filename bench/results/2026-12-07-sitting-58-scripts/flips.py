"""flips.py A.json B.json: every verdict of two reports side by side; prints the pairs whose verdict changed and a count."""
import json, sys, collections
def verdicts(path):
    r = json.load(open(path)); out = {}
    def walk(v):
        if isinstance(v, dict):
            for t in v.get("targets", []) if isinstance(v.get("targets"), list) else []:
                m = t.get("met")
                out[t["what"]] = ("met" if m is True else "not met" if m is False else "not judged", t.get("ratio"))
            for x in v.values(): walk(x)
        elif isinstance(v, list):
            for x in v: walk(x)
    walk(r); return out
a, b = verdicts(sys.argv[1]), verdicts(sys.argv[2])
c = collections.Counter()
for k in sorted(set(a) | set(b)):
    va, vb = a.get(k, ("absent", None)), b.get(k, ("absent", None))
    c[(va[0], vb[0])] += 1
    if va[0] != vb[0]:
        f = lambda x: "—" if x is None else f"{x:.3f}"
        print(f"{va[0]:>10} -> {vb[0]:<10} {f(va[1])} -> {f(vb[1])}  {k}")
print(len(a), len(b)); print(dict(c))
