"""catup.py's categories: category(frames) names the first whose marker is in a sample's chain."""
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

def category(frames):
    s = set(frames)
    for name, marks in CATS:
        if any(m in s for m in marks):
            return name
    if "::" in frames[0] or frames[0].startswith("[unknown]"):
        return "user"
    return "other"
