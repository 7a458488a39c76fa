#!/usr/bin/env python3
"""cat44.py TXT SERVER_COMM [SENDS]: the server's samples (threads whose comm starts with
SERVER_COMM) by what they were doing, from `perf script -F comm,tid,ip,sym` call graphs.
Each sample goes to the first category whose rule matches its stack (leaf first); with SENDS
(sends a second over the 8 s) also prints microseconds per send."""
import sys, collections
txt, comm = sys.argv[1], sys.argv[2]
sends = float(sys.argv[3]) if len(sys.argv) > 3 else None
HZ, SECS = 1999, 8.0
# (name, predicate over the list of frames leaf->root)
def has(*names):
    return lambda st: any(f in names for f in st)
def under(inner, outer):
    """inner appears below (leafward of) outer on the stack."""
    def p(st):
        for i, f in enumerate(st):
            if f in inner:
                return any(g in outer for g in st[i + 1:])
        return False
    return p
RULES = [
    # Subscribers send nothing in steady state, so every tcp_v4_rcv in a server thread is a
    # client socket's receive run in the softirq of the server's own loopback transmit (an ACK
    # taken from the backlog at release_sock has no tcp_v4_rcv on its stack).
    ("client receive (tcp_v4_rcv in the send's softirq)", has("tcp_v4_rcv")),
    ("ACKs taken at release_sock", has("__release_sock")),
    ("transmit below tcp (ip, loopback)", under({"__ip_queue_xmit", "ip_queue_xmit", "ip_finish_output2", "__dev_queue_xmit", "loopback_xmit"}, {"__tcp_transmit_skb"})),
    ("tcp send (sendmsg, write_xmit, skb)", has("tcp_sendmsg_locked", "tcp_sendmsg", "tcp_push", "__tcp_push_pending_frames", "tcp_write_xmit")),
    ("io_uring other (submit, complete, task work)", lambda st: any(f.startswith("io_") or f.startswith("__io_") for f in st) and not any("tcp" in f for f in st)),
    ("epoll / recv / other syscalls", has("do_epoll_wait", "ep_poll", "__sys_recvfrom", "tcp_recvmsg", "__x64_sys_epoll_wait")),
    ("timers, scheduler, idle entry", has("schedule", "__schedule", "hrtimer_interrupt", "__sysvec_apic_timer_interrupt", "do_nanosleep", "futex_wait")),
]
counts = collections.Counter(); total = 0; user = collections.Counter()
def flush(hdr, st):
    global total
    if not hdr or not hdr.startswith(comm):
        return
    total += 1
    for name, rule in RULES:
        try:
            if rule(st):
                counts[name] += 1; return
        except ValueError:
            pass
    leaf = st[0] if st else "?"
    if any(f in ("entry_SYSCALL_64", "do_syscall_64", "asm_sysvec_apic_timer_interrupt", "irq_exit_rcu") for f in st):
        counts["kernel, other"] += 1
    else:
        counts["own code (user space)"] += 1; user[leaf] += 1
hdr, st = None, []
for line in open(txt, errors="replace"):
    line = line.rstrip("\n")
    if not line.strip():
        flush(hdr, st); hdr, st = None, []; continue
    if not line.startswith(("\t", " ")):
        hdr, st = line.strip(), []
    else:
        parts = line.split(None, 1)
        st.append(parts[1].split("+")[0].strip() if len(parts) > 1 else "?")
flush(hdr, st)
ms = lambda n: n / HZ / SECS * 1000
print(f"{txt}: {comm}* {total} samples = {ms(total):.0f} ms per second" + (f", {ms(total)*1000/sends:.2f} us per send at {sends:.0f} sends/s" if sends else ""))
for name, n in counts.most_common():
    print(f"  {name:52s} {ms(n):6.0f} ms/s {100*n/total:5.1f}%" + (f"  {ms(n)*1000/sends:5.2f} us/send" if sends else ""))
print("  own code, top leaves:", ", ".join(f"{k} {100*v/total:.1f}%" for k, v in user.most_common(8)))
