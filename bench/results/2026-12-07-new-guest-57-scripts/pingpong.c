// pingpong.c: the round trip of one cache line between CPU 0 and CPU 1 (two pinned threads
// bouncing an atomic counter), median of 20 batches of 20,000 round trips, in ns.
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
static _Alignas(64) atomic_long flag;
static const long N = 20000;
static void pin(int c){cpu_set_t s;CPU_ZERO(&s);CPU_SET(c,&s);pthread_setaffinity_np(pthread_self(),sizeof s,&s);}
static void *other(void *a){(void)a;pin(1);for(long i=0;i<20L*N;i++){while(atomic_load_explicit(&flag,memory_order_acquire)!=2*i+1);atomic_store_explicit(&flag,2*i+2,memory_order_release);}return 0;}
static int cmp(const void*a,const void*b){double x=*(double*)a,y=*(double*)b;return x<y?-1:x>y;}
int main(void){pthread_t t;pin(0);pthread_create(&t,0,other,0);double r[20];long k=0;
for(int b=0;b<20;b++){struct timespec s,e;clock_gettime(CLOCK_MONOTONIC,&s);
for(long i=0;i<N;i++,k++){atomic_store_explicit(&flag,2*k+1,memory_order_release);while(atomic_load_explicit(&flag,memory_order_acquire)!=2*k+2);}
clock_gettime(CLOCK_MONOTONIC,&e);r[b]=((e.tv_sec-s.tv_sec)*1e9+(e.tv_nsec-s.tv_nsec))/N;}
pthread_join(t,0);qsort(r,20,sizeof r[0],cmp);printf("%.0f %.0f %.0f\n",r[0],r[10],r[19]);return 0;}
