// probe43.c: how fast each CPU is right now. One thread per CPU, pinned; every 50 ms each
// times a fixed ALU loop (dependent multiply-adds) and a fixed pointer chase over 8 MiB, and
// once a second prints each CPU's median ns for both. A slower CPU at the same work means the
// host (an SMT sibling, another guest) took some of it. gcc -O2 -pthread probe43.c -o probe43
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define N 20
#define CHASE (8u << 20) / sizeof(size_t)
static double alu[2][N], mem[2][N];
static volatile int round_no;
static uint64_t now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1000000000ull + t.tv_nsec; }
static int cmp(const void *a, const void *b) { double x = *(double *)a, y = *(double *)b; return (x > y) - (x < y); }
static void *run(void *arg) {
    int cpu = (int)(intptr_t)arg;
    cpu_set_t s; CPU_ZERO(&s); CPU_SET(cpu, &s); pthread_setaffinity_np(pthread_self(), sizeof s, &s);
    size_t *next = malloc(CHASE * sizeof(size_t));
    for (size_t i = 0; i < CHASE; i++) next[i] = i;
    srand(cpu + 1);
    for (size_t i = CHASE - 1; i > 0; i--) { size_t j = ((size_t)rand() * RAND_MAX + rand()) % i; size_t t = next[i]; next[i] = next[j]; next[j] = t; }
    volatile uint64_t sink = 0;
    for (;;) {
        for (int k = 0; k < N; k++) {
            uint64_t t0 = now(), x = 1;
            for (int i = 0; i < 100000; i++) x = x * 6364136223846793005ull + 1442695040888963407ull;
            uint64_t t1 = now();
            size_t p = 0;
            for (int i = 0; i < 2000; i++) p = next[p];
            uint64_t t2 = now();
            sink += x + p;
            alu[cpu][k] = (t1 - t0) / 1e3; mem[cpu][k] = (t2 - t1) / 1e3;
            usleep(50000);
        }
        if (cpu == 0) round_no++;
    }
    return 0;
}
int main(int argc, char **argv) {
    int secs = argc > 1 ? atoi(argv[1]) : 30;
    pthread_t t[2];
    for (int c = 0; c < 2; c++) pthread_create(&t[c], 0, run, (void *)(intptr_t)c);
    uint64_t start = now();
    int seen = 0;
    while ((now() - start) / 1000000000ull < (uint64_t)secs) {
        usleep(20000);
        if (round_no == seen) continue;
        seen = round_no;
        double a[2][N], m[2][N];
        for (int c = 0; c < 2; c++) for (int k = 0; k < N; k++) { a[c][k] = alu[c][k]; m[c][k] = mem[c][k]; }
        for (int c = 0; c < 2; c++) { qsort(a[c], N, sizeof(double), cmp); qsort(m[c], N, sizeof(double), cmp); }
        printf("%6.1f s  alu us cpu0 %6.1f cpu1 %6.1f   chase us cpu0 %6.1f cpu1 %6.1f\n", (now() - start) / 1e9,
               a[0][N / 2], a[1][N / 2], m[0][N / 2], m[1][N / 2]);
        fflush(stdout);
    }
    return 0;
}
