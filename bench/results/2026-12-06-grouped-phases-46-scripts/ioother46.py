"""ioother46.py FILE COMM_PREFIX: the samples of the send's socket layer and the ring's own work
(chains through io_*, sock_*, inet_send*, fdget or __sys_sendto with no tcp frame), by leaf and by
the leaf's four innermost frames: the cache lines a send loads before TCP (cat44.py's "io_uring
other" for holdfast, part of "kernel, other" for uWebSockets)."""
import collections, os, sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "2026-12-05-plain-sends-45-scripts"))
from perfchains import samples
f, pref = sys.argv[1], sys.argv[2]
leaf = collections.Counter(); inner = collections.Counter(); n = tot = 0
for _, fr in samples(f, pref):
    tot += 1
    fr = [x.split("+")[0] for x in fr]
    if any("tcp" in x for x in fr):
        continue
    if not any(x.startswith(("io_", "__io_", "__sys_sendto", "sock_", "inet_send", "fdget", "__x64_sys_sendto", "do_syscall_64")) for x in fr):
        continue
    n += 1; leaf[fr[0]] += 1; inner[" < ".join(fr[:4])] += 1
print(f"{pref}: {n} of {tot} samples")
for k, v in leaf.most_common(12): print(f"{v:5d} {100*v/tot:5.2f}% {k}")
print()
for k, v in inner.most_common(8): print(f"{v:5d} {k}")
