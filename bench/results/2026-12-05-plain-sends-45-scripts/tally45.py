import collections, re, subprocess, sys
# tally45.py DATA N TAG: sock_recv_length / sock_send_length events of `perf script` by thread,
# event and result (length > 0, 0 = EOF, or the error), per connection.
data, n, tag = sys.argv[1], int(sys.argv[2]), sys.argv[3]
out = subprocess.run(["perf", "script", "-i", data], capture_output=True, text=True).stdout
c = collections.Counter()
for l in out.splitlines():
    m = re.search(r"^\s*(\S+)\s+\d+.*sock:(sock_\w+_length):.*length = (-?\d+), error = (-?\d+)", l)
    if not m: continue
    comm, ev, ln, err = m.group(1), m.group(2), int(m.group(3)), int(m.group(4))
    kind = "len>0" if ln > 0 else ("err%d" % err if err else "len=0")
    c[(comm, ev, kind)] += 1
for k, v in sorted(c.items()): print(tag, *k, v, "%.2f per connection" % (v / n))
