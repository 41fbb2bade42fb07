// Copyright 2026 The kvm-nisv Authors.
// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause
//
// nisv-c: the C program of the Linux guest (guests/linux/README.md), built by
// scripts/build-linux-guest with Debian's `aarch64-linux-gnu-gcc -O2 -static`
// against glibc, whose tuned memcpy/memset are what C programs really run.
//
//   nisv-c devio [devmem|uio]   the device I/O workload on the test device's window
//   nisv-c smp [ITERS]          the same on two CPUs at once, plus shared counters
//   nisv-c probe                what libc calls that are wrong on Device memory do
//
// Each step runs the same function on the device region and on a RAM buffer,
// then compares the device's own hash of the range (CMD_HASH, one MMIO exit)
// with the RAM copy's, and finally reads the region back with memcpy and
// compares every byte. Results: lines "@nisv c <what> <step> ok|FAIL ...".
//
// /dev/mem and UIO map device memory Device-nGnRnE, where every access must be
// aligned to its size, so offsets and lengths are multiples of 16 and the
// structs are 32 bytes (as a driver's descriptors would be). `probe` shows what
// happens otherwise.

#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define REG_ADDR 0x00
#define REG_OFFSET 0x08
#define REG_LEN 0x10
#define REG_CMD_STATUS 0x18
#define REG_NISV_COUNT 0x28
#define REG_RESULT 0x30
#define REG_PHASE 0x40
#define CMD_FILL 3
#define CMD_HASH 4

#define REGION_LEN 0x5A00
#define DESCS 64
#define DESC_AT 0x3000

// SMP layout (window offsets), the same as the Rust program's.
#define COUNTER_LSE 0xF0000
#define LOCK_AT 0xF0040
#define COUNTER_LOCKED 0xF0080
#define REGION_STRIDE 0x10000

struct addrs {
	uint64_t ctrl, ctrl_len, data, data_len;
};

static volatile uint64_t *ctrl;
// A device command is a sequence of register accesses: threads take turns.
static pthread_mutex_t command = PTHREAD_MUTEX_INITIALIZER;

static uint64_t fnv1a64(const uint8_t *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 0x100000001b3ull;
	return h;
}

static uint64_t be64(const uint8_t *b)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | b[i];
	return v;
}

static int find_testdev(struct addrs *a)
{
	DIR *d = opendir("/proc/device-tree");
	struct dirent *e;
	if (!d)
		return -1;
	while ((e = readdir(d))) {
		if (strncmp(e->d_name, "testdev@", 8))
			continue;
		char path[512];
		uint8_t reg[32];
		snprintf(path, sizeof(path), "/proc/device-tree/%s/reg", e->d_name);
		FILE *f = fopen(path, "rb");
		size_t n = f ? fread(reg, 1, sizeof(reg), f) : 0;
		if (f)
			fclose(f);
		closedir(d);
		if (n != sizeof(reg))
			return -1;
		a->ctrl = be64(reg);
		a->ctrl_len = be64(reg + 8);
		a->data = be64(reg + 16);
		a->data_len = be64(reg + 24);
		return 0;
	}
	closedir(d);
	return -1;
}

static void *map(const char *path, uint64_t off, size_t len)
{
	int fd = open(path, O_RDWR | O_SYNC | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "nisv-c: open %s: %s\n", path, strerror(errno));
		return NULL;
	}
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)off);
	int err = errno;
	close(fd);
	if (p == MAP_FAILED) {
		fprintf(stderr, "nisv-c: mmap %s at %#llx: %s\n", path, (unsigned long long)off,
			strerror(err));
		return NULL;
	}
	return p;
}

static uint64_t nisv_count(void)
{
	return ctrl[REG_NISV_COUNT / 8];
}

static void set_phase(const char *name)
{
	uint64_t v = 0;
	memcpy(&v, name, strnlen(name, 8));
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	ctrl[REG_PHASE / 8] = v;
}

// The device's FNV-1a 64 of data[off..+len]; 0 with *ok = 0 if out of range.
static uint64_t dev_hash(size_t off, size_t len, int *ok)
{
	// Every earlier access to the window happens before the command.
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	pthread_mutex_lock(&command);
	ctrl[REG_OFFSET / 8] = off;
	ctrl[REG_LEN / 8] = len;
	ctrl[REG_CMD_STATUS / 8] = CMD_HASH;
	*ok = ctrl[REG_CMD_STATUS / 8] == 0;
	uint64_t r = ctrl[REG_RESULT / 8];
	pthread_mutex_unlock(&command);
	return r;
}

static void dev_fill(size_t off, size_t len, uint8_t byte)
{
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	pthread_mutex_lock(&command);
	ctrl[REG_ADDR / 8] = byte;
	ctrl[REG_OFFSET / 8] = off;
	ctrl[REG_LEN / 8] = len;
	ctrl[REG_CMD_STATUS / 8] = CMD_FILL;
	(void)ctrl[REG_CMD_STATUS / 8];
	pthread_mutex_unlock(&command);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
}

static __thread uint64_t rng_state;

static uint64_t rng(void)
{
	uint64_t x = rng_state;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	rng_state = x;
	return x * 0x2545f4914f6cdd1dull;
}

static void rng_fill(uint8_t *b, size_t n)
{
	for (size_t i = 0; i < n; i += 8) {
		uint64_t v = rng();
		memcpy(b + i, &v, n - i < 8 ? n - i : 8);
	}
}

// ------------------------------------------------------------------ steps --

struct desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t id;
	uint64_t cookie[2];
};

_Static_assert(sizeof(struct desc) == 32, "descriptors are 32 bytes");

static const size_t copies[5][2] = {{0, 16}, {64, 48}, {256, 256}, {1024, 2048}, {4096, 4096}};

static void step_memcpy(uint8_t *b, const uint8_t *src)
{
	for (int i = 0; i < 5; i++)
		memcpy(b + copies[i][0], src + copies[i][0], copies[i][1]);
}

static void step_memset(uint8_t *b)
{
	memset(b + 0x2000, 0xa5, 0x800);
	memset(b + 0x2800, 0, 0x60);
	memset(b + 0x2900, 0x5a, 0x400);
}

static void step_struct_copy(uint8_t *b, const struct desc *src)
{
	struct desc *d = (struct desc *)(b + DESC_AT);
	for (int i = 0; i < DESCS; i++)
		d[i] = src[i];
}

static void step_struct_update(uint8_t *b)
{
	struct desc *d = (struct desc *)(b + DESC_AT);
	for (int i = 0; i < DESCS; i++) {
		d[i].len = d[i].len * 3 + 1;
		d[i].flags ^= 0x8000;
		d[i].cookie[1] = d[i].cookie[0] ^ d[i].addr;
	}
	int half = DESCS / 2;
	for (int i = 0; i < half / 2; i++) {
		struct desc a = d[half + i];
		d[half + i] = d[DESCS - 1 - i];
		d[DESCS - 1 - i] = a;
	}
}

static uint64_t step_loops(uint8_t *b, uint32_t seed)
{
	uint32_t *w32 = (uint32_t *)(b + 0x4000);
	for (uint32_t i = 0; i < 512; i++)
		w32[i] = (i * 0x9e3779b9u) ^ seed;
	uint64_t *w64 = (uint64_t *)(b + 0x4800);
	for (uint64_t i = 0; i < 256; i++)
		w64[i] = i << 32 | (seed ^ i);
	uint64_t sum = 0;
	for (int i = 0; i < 256; i++)
		sum += w64[i];
	uint16_t *w16 = (uint16_t *)(b + 0x5000);
	for (int i = 0; i < 1024; i++)
		w16[i] = (uint16_t)(w16[i] * 3 + i);
	uint8_t *w8 = b + 0x5800;
	uint8_t key[4];
	memcpy(key, &seed, 4);
	for (int i = 0; i < 0x200; i++)
		w8[i] ^= (uint8_t)(key[i & 3] + i);
	return sum;
}

// --------------------------------------------------------------- workload --

struct work {
	uint8_t *dev;
	size_t window_offset;
	uint8_t *ram;
	const char *label; // "devmem", "uio", "smp cpu0", ...
	int ok;
};

static void report(struct work *w, const char *step, int ok, size_t bytes, uint64_t nisv,
		   const char *detail)
{
	printf("@nisv c %s %s %s bytes=%zu nisv=%llu%s%s\n", w->label, step, ok ? "ok" : "FAIL",
	       bytes, (unsigned long long)nisv, detail[0] ? " " : "", detail);
	w->ok &= ok;
}

static void check(struct work *w, const char *step, size_t from, size_t to, uint64_t n0)
{
	int in_range;
	uint64_t want = fnv1a64(w->ram + from, to - from);
	uint64_t got = dev_hash(w->window_offset + from, to - from, &in_range);
	char detail[128] = "";
	int ok = in_range && got == want;
	if (!ok)
		snprintf(detail, sizeof(detail), "device hash %#llx != RAM hash %#llx",
			 (unsigned long long)got, (unsigned long long)want);
	report(w, step, ok, to - from, nisv_count() - n0, detail);
}

static void run_work(struct work *w, uint64_t seed)
{
	static __thread uint8_t src[REGION_LEN];
	uint64_t n0;
	rng_state = seed | 1;

	// The device region starts as whatever is there: zero it and the RAM
	// twin (the device's CMD_FILL, one exit), so both start equal.
	n0 = nisv_count();
	dev_fill(w->window_offset, REGION_LEN, 0);
	memset(w->ram, 0, REGION_LEN);
	check(w, "fill", 0, REGION_LEN, n0);

	n0 = nisv_count();
	rng_fill(src, REGION_LEN);
	step_memcpy(w->dev, src);
	step_memcpy(w->ram, src);
	check(w, "memcpy", 0, 0x2000, n0);

	n0 = nisv_count();
	step_memset(w->dev);
	step_memset(w->ram);
	check(w, "memset", 0x2000, 0x2d00, n0);

	n0 = nisv_count();
	struct desc descs[DESCS];
	for (int i = 0; i < DESCS; i++) {
		descs[i].addr = rng();
		descs[i].len = (uint32_t)rng();
		descs[i].flags = (uint16_t)i;
		descs[i].id = (uint16_t)(DESCS - i);
		descs[i].cookie[0] = rng();
		descs[i].cookie[1] = rng();
	}
	step_struct_copy(w->dev, descs);
	step_struct_copy(w->ram, descs);
	step_struct_update(w->dev);
	step_struct_update(w->ram);
	check(w, "structs", DESC_AT, DESC_AT + DESCS * 32, n0);

	n0 = nisv_count();
	uint32_t s = (uint32_t)rng();
	uint64_t sd = step_loops(w->dev, s);
	uint64_t sr = step_loops(w->ram, s);
	if (sd != sr) {
		char detail[96];
		snprintf(detail, sizeof(detail), "sum over the device %#llx != over RAM %#llx",
			 (unsigned long long)sd, (unsigned long long)sr);
		report(w, "loops", 0, 0x5a00 - 0x4000, nisv_count() - n0, detail);
	} else {
		check(w, "loops", 0x4000, 0x5a00, n0);
	}

	// Read everything back (memcpy from the device). The empty asm tells the
	// compiler the device memory may have changed, so it reads it again.
	n0 = nisv_count();
	static __thread uint8_t back[REGION_LEN];
	__asm__ volatile("" ::"r"(w->dev) : "memory");
	memcpy(back, w->dev, REGION_LEN);
	size_t bad = 0, first = 0;
	for (size_t i = 0; i < REGION_LEN; i++)
		if (back[i] != w->ram[i] && bad++ == 0)
			first = i;
	char detail[96] = "";
	if (bad)
		snprintf(detail, sizeof(detail), "%zu bytes differ, first at +%#zx", bad, first);
	report(w, "readback", bad == 0, REGION_LEN, nisv_count() - n0, detail);
}

// -------------------------------------------------------------- commands --

static int open_device(struct addrs *a)
{
	if (find_testdev(a)) {
		fprintf(stderr, "nisv-c: no testdev@ node in /proc/device-tree\n");
		return -1;
	}
	ctrl = map("/dev/mem", a->ctrl, a->ctrl_len);
	return ctrl ? 0 : -1;
}

static uint8_t *map_window(const char *how, const struct addrs *a, size_t *len)
{
	if (!strcmp(how, "uio")) {
		FILE *f = fopen("/sys/class/uio/uio0/maps/map0/size", "r");
		unsigned long long n = 0;
		if (!f || fscanf(f, "%llx", &n) != 1) {
			fprintf(stderr, "nisv-c: no UIO map 0\n");
			if (f)
				fclose(f);
			return NULL;
		}
		fclose(f);
		*len = n;
		return map("/dev/uio0", 0, n);
	}
	*len = a->data_len;
	return map("/dev/mem", a->data, a->data_len);
}

static int cmd_devio(const char *how)
{
	struct addrs a;
	size_t len;
	if (open_device(&a))
		return 1;
	uint8_t *win = map_window(how, &a, &len);
	if (!win || len < REGION_LEN)
		return 1;
	static uint8_t ram[REGION_LEN];
	struct work w = {win, 0, ram, how, 1};
	set_phase(strcmp(how, "uio") ? "c-devm" : "c-uio");
	run_work(&w, 0xc5eed);
	set_phase("idle");
	return w.ok ? 0 : 1;
}

// SMP: an LSE fetch-add, and a lock whose acquire is an exchange that the
// compiler turns into an LDAXR/STXR loop when it may not call the outline
// helpers (which would pick SWPA on an LSE CPU).
__attribute__((noinline, target("+lse"))) static void add_lse(uint64_t *c)
{
	__atomic_fetch_add(c, 1, __ATOMIC_RELAXED);
}

__attribute__((noinline, target("no-outline-atomics"))) static void lock(uint32_t *l)
{
	while (__atomic_exchange_n(l, 1, __ATOMIC_ACQUIRE))
		;
}

static void unlock(uint32_t *l)
{
	__atomic_store_n(l, 0, __ATOMIC_RELEASE);
}

struct thread_arg {
	int cpu;
	uint8_t *win;
	uint64_t iters;
	pthread_barrier_t *start;
	struct work w;
	int pinned;
};

static void *smp_thread(void *p)
{
	struct thread_arg *t = p;
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(t->cpu, &set);
	t->pinned = sched_setaffinity(0, sizeof(set), &set) == 0;
	pthread_barrier_wait(t->start);
	run_work(&t->w, 0xc5eed00 + t->cpu);
	uint64_t *lse = (uint64_t *)(t->win + COUNTER_LSE);
	uint32_t *lk = (uint32_t *)(t->win + LOCK_AT);
	volatile uint64_t *locked = (volatile uint64_t *)(t->win + COUNTER_LOCKED);
	for (uint64_t i = 0; i < t->iters; i++) {
		add_lse(lse);
		lock(lk);
		*locked = *locked + 1;
		unlock(lk);
	}
	return NULL;
}

static int cmd_smp(uint64_t iters)
{
	struct addrs a;
	size_t len;
	if (open_device(&a))
		return 1;
	uint8_t *win = map_window("devmem", &a, &len);
	if (!win || len < COUNTER_LOCKED + 8)
		return 1;
	int threads = 2;
	cpu_set_t mine;
	if (sched_getaffinity(0, sizeof(mine), &mine) == 0 && CPU_COUNT(&mine) < 2)
		threads = 1;
	static uint8_t ram[2][REGION_LEN];
	struct thread_arg t[2];
	char labels[2][16];
	pthread_t tid[2];
	pthread_barrier_t start;
	pthread_barrier_init(&start, NULL, threads);
	*(volatile uint64_t *)(win + COUNTER_LSE) = 0;
	*(volatile uint64_t *)(win + COUNTER_LOCKED) = 0;
	*(volatile uint32_t *)(win + LOCK_AT) = 0;
	set_phase("c-smp");
	for (int k = 0; k < threads; k++) {
		snprintf(labels[k], sizeof(labels[k]), "smp cpu%d", k);
		t[k] = (struct thread_arg){k, win, iters, &start,
					   {win + k * REGION_STRIDE, k * REGION_STRIDE, ram[k], labels[k], 1},
					   0};
		pthread_create(&tid[k], NULL, smp_thread, &t[k]);
	}
	int ok = 1;
	for (int k = 0; k < threads; k++) {
		pthread_join(tid[k], NULL);
		ok &= t[k].w.ok;
		if (!t[k].pinned) {
			printf("@nisv c smp cpu%d FAIL could not pin the thread\n", k);
			ok = 0;
		}
	}
	set_phase("idle");
	uint64_t want = threads * iters;
	uint64_t got_lse = *(volatile uint64_t *)(win + COUNTER_LSE);
	uint64_t got_locked = *(volatile uint64_t *)(win + COUNTER_LOCKED);
	int c_ok = got_lse == want && got_locked == want;
	printf("@nisv c smp counters %s lse=%llu locked=%llu expected=%llu threads=%d\n",
	       c_ok ? "ok" : "FAIL", (unsigned long long)got_lse, (unsigned long long)got_locked,
	       (unsigned long long)want, threads);
	return ok && c_ok ? 0 : 1;
}

// What glibc does with calls that are fine on RAM but wrong for Device memory:
// each runs in a child; the result is how the child ended.
static void probe_one(const char *name, uint8_t *win, void (*f)(uint8_t *))
{
	uint64_t n0 = nisv_count();
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0) {
		f(win);
		_exit(0);
	}
	int st = 0;
	waitpid(pid, &st, 0);
	if (WIFSIGNALED(st))
		printf("@nisv c probe %s signal=%s nisv=%llu\n", name, strsignal(WTERMSIG(st)),
		       (unsigned long long)(nisv_count() - n0));
	else
		printf("@nisv c probe %s exit=%d nisv=%llu\n", name, WEXITSTATUS(st),
		       (unsigned long long)(nisv_count() - n0));
}

static void unaligned_memcpy(uint8_t *win)
{
	static uint8_t src[256];
	memcpy(win + 0x20001, src, 200);
}

static void zero_memset(uint8_t *win)
{
	memset(win + 0x21000, 0, 4096);
}

static int cmd_probe(void)
{
	struct addrs a;
	size_t len;
	if (open_device(&a))
		return 1;
	uint8_t *win = map_window("devmem", &a, &len);
	if (!win)
		return 1;
	set_phase("c-probe");
	probe_one("unaligned-memcpy", win, unaligned_memcpy);
	probe_one("zero-memset-4k", win, zero_memset);
	set_phase("idle");
	return 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc >= 2 && !strcmp(argv[1], "devio"))
		return cmd_devio(argc >= 3 ? argv[2] : "devmem");
	if (argc >= 2 && !strcmp(argv[1], "smp"))
		return cmd_smp(argc >= 3 ? strtoull(argv[2], NULL, 0) : 300);
	if (argc >= 2 && !strcmp(argv[1], "probe"))
		return cmd_probe();
	fprintf(stderr, "usage: nisv-c devio [devmem|uio] | smp [ITERS] | probe\n");
	return 2;
}
