# slice.py PID NS: give every thread of PID whose name starts with holdfast-w (the workers)
# a custom EEVDF slice of NS nanoseconds (sched_setattr, SCHED_OTHER, sched_runtime; 6.12+).
import ctypes, os, struct, sys
libc = ctypes.CDLL(None, use_errno=True)
pid, ns = int(sys.argv[1]), int(sys.argv[2])
for tid in os.listdir(f"/proc/{pid}/task"):
    name = open(f"/proc/{pid}/task/{tid}/comm").read().strip()
    if not name.startswith(sys.argv[3] if len(sys.argv) > 3 else "holdfast-w"):
        continue
    attr = struct.pack("IIQiIQQQII", 56, 0, 0, 0, 0, ns, 0, 0, 0, 0)
    buf = ctypes.create_string_buffer(attr)
    r = libc.syscall(314, int(tid), buf, 0)
    print(name, tid, r, os.strerror(ctypes.get_errno()) if r else "ok")
