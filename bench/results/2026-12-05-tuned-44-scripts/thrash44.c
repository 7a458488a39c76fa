// thrash44.c: evict the caches with what would otherwise be idle time. One SCHED_IDLE thread per
// CPU, pinned, each writing one cache line in every 64 bytes over its own MB-sized buffer in a
// loop, so it runs only when nothing else wants that CPU and the last-level cache holds little
// else for long. gcc -O2 -pthread thrash44.c -o thrash44; ./thrash44 MB_PER_THREAD SECONDS
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>
static size_t bytes;
static void *run(void *arg) {
    int cpu = (int)(intptr_t)arg;
    cpu_set_t s; CPU_ZERO(&s); CPU_SET(cpu, &s); pthread_setaffinity_np(pthread_self(), sizeof s, &s);
    struct sched_param p = {0}; pthread_setschedparam(pthread_self(), SCHED_IDLE, &p);
    volatile uint8_t *b = malloc(bytes);
    for (uint64_t n = 0;; n++)
        for (size_t i = 0; i < bytes; i += 64) b[i] = (uint8_t)n;
    return 0;
}
int main(int argc, char **argv) {
    bytes = (size_t)(argc > 1 ? atoi(argv[1]) : 512) << 20;
    pthread_t t[2];
    for (int c = 0; c < 2; c++) pthread_create(&t[c], 0, run, (void *)(intptr_t)c);
    sleep(argc > 2 ? atoi(argv[2]) : 30);
    return 0;
}
