import sys, collections
# catup.py FILE COMM_PREFIX: each sample of the threads to the first category whose marker is in its chain
f, pref = sys.argv[1], sys.argv[2]
CATS = [
 ("close (tcp_close, __fput, shutdown)", ["tcp_close", "__fput", "____fput", "tcp_shutdown", "inet_shutdown", "io_close", "__x64_sys_close", "sock_close", "inet_release"]),
 ("accept", ["inet_csk_accept", "do_accept", "io_accept", "__sys_accept4", "__x64_sys_accept4", "accept4"]),
 ("send (tcp_sendmsg)", ["tcp_sendmsg", "tcp_sendmsg_locked"]),
 ("recv (tcp_recvmsg)", ["tcp_recvmsg", "tcp_recvmsg_locked", "sock_recvmsg"]),
 ("poll arm / epoll_ctl", ["io_poll_add", "__io_arm_poll_handler", "io_arm_poll_handler", "do_epoll_ctl", "__x64_sys_epoll_ctl", "io_poll_task_func", "io_pollfree_wake"]),
 ("epoll_wait / io_uring wait", ["do_epoll_wait", "io_cqring_wait", "schedule"]),
 ("fd install / files", ["io_fixed_fd_install", "fd_install", "io_install_fixed_file", "__io_fixed_fd_install", "alloc_fd", "io_files_update"]),
 ("rx softirq (tcp_v4_rcv)", ["tcp_v4_rcv", "net_rx_action"]),
 ("timers", ["run_timer_softirq", "__run_timers"]),
 ("rcu", ["rcu_core", "rcu_do_batch"]),
 ("io_uring other", ["io_uring_enter", "__do_sys_io_uring_enter", "io_submit_sqes", "tctx_task_work", "io_run_task_work", "__io_run_local_work"]),
]
cnt = collections.Counter(); tot = 0; user = collections.Counter()
cur = None; frames = []
def flush():
    global tot
    if cur and cur.startswith(pref) and frames:
        tot += 1
        s = set(frames)
        for name, marks in CATS:
            if any(m in s for m in marks):
                cnt[name] += 1; return
        if frames[0].startswith("[unknown]") or "::" in frames[0] or not any(x in frames[0] for x in ("_", "")):
            cnt["user"] += 1; user[frames[0]] += 1; return
        cnt["other: " + frames[-1][:40]] += 1
for line in open(f, errors="replace"):
    if not line.strip():
        flush(); cur = None; frames = []; continue
    if not line.startswith("\t") and not line.startswith(" "):
        cur = line.split()[0]; frames = []; continue
    p = line.split(None, 1); frames.append(p[1].strip() if len(p) > 1 else "?")
flush()
print(f"{f} {pref}: {tot} samples")
for k, v in cnt.most_common(25): print(f"  {v:5d} {100*v/tot:5.1f}% {k}")
