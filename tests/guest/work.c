// SPDX-License-Identifier: MIT
/*
 * Workloads: fill, dirty, verify over the workload area (all RAM the guest
 * does not use itself, in address order, indexed by page).
 *
 * Every 8-byte word of a written page is base + i * K_STEP, where base
 * mixes the page's PFN and generation: a page that is misplaced, stale or
 * torn fails verification. gen[] (one u32 per page, in guest RAM right
 * after the image) is the guest's bookkeeping; 0 means never written.
 *
 * Jobs (fill, verify, dirty start/stop) run on every vCPU, each on its own
 * slice. The BSP posts a job by bumping job_seq; each worker stops any
 * dirtying at a page boundary and checks in (arrived), waits for all, does
 * its slice, checks out (finished), waits for all, and only then resumes
 * dirtying, so no page is written by two vCPUs at once and verify sees a
 * quiet memory. The counters only grow: job k is complete at k * ncpus.
 * The BSP runs the same state machine in bounded steps between console
 * polls and heartbeats; APs run it in a loop.
 */
#include "guest.h"

#define MAX_EXTENTS     32
#define K_MIX           0xd6e8feb86659fd93ULL
#define K_STEP          0x9e3779b97f4a7c15ULL
#define BARRIER_WAIT_NS (20 * NSEC_PER_USEC)
#define IDLE_NS         (5 * NSEC_PER_MSEC)   /* idle APs: job start latency */
#define SLEEP_MIN_NS    (50 * NSEC_PER_USEC)
#define PACE_SLEEP_NS   NSEC_PER_MSEC         /* paced dirtier ahead: sleep this long */
#define CATCHUP_NS      (10 * NSEC_PER_MSEC)   /* paced dirtying never bursts more */
#define AP_BUDGET_NS    (50 * NSEC_PER_MSEC)

enum { PH_IDLE, PH_ARRIVED, PH_WORK, PH_DONE };
enum { JOB_FILL = 1, JOB_VERIFY, JOB_DIRTY };

struct extent {
	u64 pa, first, npages;
};

struct worker {
	unsigned slot, phase;
	u32 seen;                       /* last job_seq taken */
	u32 wgen;                       /* FILL: generation being written */
	u64 cur, end;                   /* foreground slice */
	bool dirty;
	u64 d_lo, d_hi, d_cur, d_step, d_due;
	u32 d_max;                      /* highest generation this vCPU dirtied */
	u64 filled, dirtied;
	u64 v_pages, v_bad, v_first;
} __aligned(64);

static struct extent ext[MAX_EXTENTS];
static unsigned next;
static u64 total_pages;
static u32 *gen;
static u64 gen_valid;                   /* gen[0..gen_valid) initialised */

static struct {
	u32 type;
	u64 hi, rate, t_start;          /* range [0, hi) in pages */
} job;
static u32 job_seq, arrived, finished;
static bool job_active;
static u32 fill_gen;
static u64 dirty_bytes, dirty_rate;
static struct worker workers[MAX_CPUS];

/* ---- workload area ---- */

static void add_extent(u64 lo, u64 hi)
{
	lo = ALIGN_UP(lo, PAGE_SIZE);
	hi &= ~(PAGE_SIZE - 1);
	if (hi > lo && next < MAX_EXTENTS)
		ext[next++] = (struct extent){ lo, 0, (hi - lo) >> PAGE_SHIFT };
}

/* RAM [lo, hi) above 1 MiB and below the mapped limit, minus the image. */
static void add_ram(u64 lo, u64 hi, u64 limit)
{
	u64 is = IMAGE_BASE, ie = ALIGN_UP((u64)(uintptr_t)__image_end, PAGE_SIZE);

	lo = lo < MiB ? MiB : lo;
	hi = hi > limit ? limit : hi;
	if (lo < is)
		add_extent(lo, hi < is ? hi : is);
	if (hi > ie)
		add_extent(lo > ie ? lo : ie, hi);
}

/* Carves gen[] from the first extent big enough, then numbers the pages. */
static void place_bookkeeping(void)
{
	u64 pages = 0, bytes;
	unsigned i, j;

	for (i = 0; i < next; i++)
		pages += ext[i].npages;
	bytes = ALIGN_UP(pages * sizeof(u32), PAGE_SIZE);
	for (i = 0; i < next && !gen; i++) {
		if (ext[i].npages << PAGE_SHIFT < bytes)
			continue;
		gen = phys(ext[i].pa);
		ext[i].pa += bytes;
		ext[i].npages -= bytes >> PAGE_SHIFT;
	}
	for (i = j = 0; i < next && gen; i++) {
		if (!ext[i].npages)
			continue;
		ext[j] = ext[i];
		ext[j++].first = total_pages;
		total_pages += ext[i].npages;
	}
	next = j;
}

/* `ram`: RAM regions sorted by address. */
void work_init(const struct mem_region *ram, unsigned n, u64 map_limit)
{
	unsigned i;

	for (i = 0; i < n; i++)
		add_ram(ram[i].base, ram[i].base + ram[i].size, map_limit);
	place_bookkeeping();
}

u64 work_bytes(void)
{
	return total_pages << PAGE_SHIFT;
}

static u64 page_pa(u64 idx)
{
	const struct extent *e = ext;

	while (idx >= e->first + e->npages)
		e++;
	return e->pa + ((idx - e->first) << PAGE_SHIFT);
}

static void gen_extend(u64 pages)
{
	if (pages <= gen_valid)
		return;
	memset(&gen[gen_valid], 0, (pages - gen_valid) * sizeof(u32));
	gen_valid = pages;
}

/* ---- patterns: native-speed loops, one add per word ---- */

static inline u64 pattern_base(u64 pa, u32 g)
{
	return ((pa >> PAGE_SHIFT) << 32 | g) * K_MIX;
}

static void write_page(u64 pa, u32 g)
{
	u64 *p = phys(pa), v = pattern_base(pa, g);
	unsigned i;

#pragma GCC unroll 8
	for (i = 0; i < PAGE_SIZE / 8; i++, v += K_STEP)
		p[i] = v;
}

static bool page_ok(u64 pa, u32 g)
{
	const u64 *p = phys(pa);
	u64 v = pattern_base(pa, g), diff = 0;
	unsigned i;

#pragma GCC unroll 8
	for (i = 0; i < PAGE_SIZE / 8; i++, v += K_STEP)
		diff |= p[i] ^ v;
	return !diff;
}

/* ---- the per-vCPU state machine ---- */

static void slice(unsigned rank, u64 hi, u64 *a, u64 *b)
{
	u64 per = hi / ncpus;

	*a = rank * per;
	*b = rank == ncpus - 1 ? hi : *a + per;
}

static u32 next_fill_gen(void)
{
	u32 g = fill_gen;
	unsigned r;

	for (r = 0; r < ncpus; r++)
		if (workers[r].d_max > g)
			g = workers[r].d_max;
	return g + 1;
}

static void job_begin(struct worker *w, unsigned rank)
{
	w->cur = w->end = 0;
	switch (job.type) {
	case JOB_FILL:
		w->wgen = next_fill_gen();      /* same on every vCPU: all are quiet */
		slice(rank, job.hi, &w->cur, &w->end);
		break;
	case JOB_VERIFY:
		w->v_pages = w->v_bad = 0;
		w->v_first = ~0ULL;
		slice(rank, job.hi, &w->cur, &w->end);
		break;
	case JOB_DIRTY:
		slice(rank, job.hi, &w->d_lo, &w->d_hi);
		w->d_cur = w->d_lo;
		w->dirty = w->d_hi > w->d_lo;
		w->d_step = job.rate ? (PAGE_SIZE * 1000000000ULL / MiB) / job.rate : 0;
		w->d_due = now_ns(w->slot);
		break;
	}
}

static void verify_page(struct worker *w, u64 idx)
{
	u32 g = gen[idx];
	u64 pa;

	if (!g)
		return;
	pa = page_pa(idx);
	w->v_pages++;
	if (!page_ok(pa, g)) {
		w->v_bad++;
		if (pa >> PAGE_SHIFT < w->v_first)
			w->v_first = pa >> PAGE_SHIFT;
	}
}

/* Works on the foreground slice for up to `budget`; true when done. */
static bool job_run(struct worker *w, u64 budget)
{
	u64 until = now_ns(w->slot) + budget;
	unsigned n = 0;

	while (w->cur < w->end) {
		if (job.type == JOB_FILL) {
			write_page(page_pa(w->cur), w->wgen);
			gen[w->cur] = w->wgen;
			w->filled++;
		} else {
			verify_page(w, w->cur);
		}
		w->cur++;
		if (++n % 64 == 0 && now_ns(w->slot) >= until)
			break;
	}
	return w->cur >= w->end;
}

static void dirty_page(struct worker *w)
{
	u32 g = gen[w->d_cur] + 1;

	write_page(page_pa(w->d_cur), g);
	gen[w->d_cur] = g;
	if (g > w->d_max)
		w->d_max = g;
	w->dirtied++;
	if (++w->d_cur == w->d_hi)
		w->d_cur = w->d_lo;
	w->d_due += w->d_step;
}

/* Dirties pages until the budget is spent, a job arrives, or the pace says
 * wait; returns how long the caller may wait (0: call again now). */
static u64 dirty_run(struct worker *w, u64 budget)
{
	u64 now = now_ns(w->slot), until = now + budget;
	unsigned n = 0;

	if (!w->dirty)
		return IDLE_NS;
	if (w->d_step && w->d_due + CATCHUP_NS < now)
		w->d_due = now - CATCHUP_NS;
	for (;;) {
		if (w->d_step && now < w->d_due)       /* ahead: sleep, then burst */
			return w->d_due - now > PACE_SLEEP_NS ? w->d_due - now : PACE_SLEEP_NS;
		dirty_page(w);
		if (!w->d_step && ++n % 16)
			continue;
		if (READ_ONCE(job_seq) != w->seen)
			return 0;
		now = now_ns(w->slot);
		if (now >= until)
			return 0;
	}
}

/* One bounded step of vCPU `rank`'s work; returns how long it may wait. */
u64 worker_step(unsigned rank, u64 budget_ns)
{
	struct worker *w = &workers[rank];
	u32 seq = READ_ONCE(job_seq);

	if (w->phase == PH_IDLE && seq != w->seen) {
		w->seen = seq;
		__atomic_add_fetch(&arrived, 1, __ATOMIC_ACQ_REL);
		w->phase = PH_ARRIVED;
	}
	switch (w->phase) {
	case PH_ARRIVED:
		if (READ_ONCE(arrived) < w->seen * ncpus)
			return BARRIER_WAIT_NS;
		job_begin(w, rank);
		w->phase = PH_WORK;
		/* fall through */
	case PH_WORK:
		if (!job_run(w, budget_ns))
			return 0;
		__atomic_add_fetch(&finished, 1, __ATOMIC_ACQ_REL);
		w->phase = PH_DONE;
		/* fall through */
	case PH_DONE:
		if (READ_ONCE(finished) < w->seen * ncpus)
			return BARRIER_WAIT_NS;
		w->phase = PH_IDLE;
		return 0;
	}
	return dirty_run(w, budget_ns);
}

/* Waits between steps; a wait of a few microseconds is not worth an exit. */
void work_wait(unsigned slot, u64 ns)
{
	sleep_ns(slot, ns < SLEEP_MIN_NS ? SLEEP_MIN_NS : ns > IDLE_NS ? IDLE_NS : ns);
}

void __noreturn worker_loop(unsigned slot, unsigned rank)
{
	u64 wait;

	workers[rank].slot = slot;
	for (;;) {
		wait = worker_step(rank, AP_BUDGET_NS);
		if (wait)
			work_wait(slot, wait);
	}
}

/* ---- the BSP's side: posting jobs and reporting them ---- */

bool work_busy(void)
{
	return job_active;
}

static void post(u32 type, u64 pages, u64 rate)
{
	job.type = type;
	job.hi = pages;
	job.rate = rate;
	job.t_start = now_ns(0);
	job_active = true;
	WRITE_ONCE(job_seq, job_seq + 1);
}

void work_fill(u64 bytes)
{
	gen_extend(bytes >> PAGE_SHIFT);
	post(JOB_FILL, bytes >> PAGE_SHIFT, 0);
}

/* bytes == 0 stops dirtying. */
void work_dirty(u64 bytes, u64 rate)
{
	gen_extend(bytes >> PAGE_SHIFT);
	dirty_bytes = bytes;
	dirty_rate = bytes ? rate : 0;
	post(JOB_DIRTY, bytes >> PAGE_SHIFT, rate);
}

void work_verify(void)
{
	post(JOB_VERIFY, gen_valid, 0);
}

static void report_verify(void)
{
	u64 pages = 0, bad = 0, first = ~0ULL;
	unsigned r;

	for (r = 0; r < ncpus; r++) {
		pages += workers[r].v_pages;
		bad += workers[r].v_bad;
		if (workers[r].v_first < first)
			first = workers[r].v_first;
	}
	if (bad)
		out_line("VERIFY FAIL pages=%llu bad=%llu first=%llu", pages, bad, first);
	else
		out_line("VERIFY PASS pages=%llu", pages);
}

/* Reports the job once every vCPU (the BSP last) is through with it. */
void work_poll(void)
{
	const struct worker *w = &workers[0];

	if (!job_active || w->phase != PH_IDLE || w->seen != job_seq)
		return;
	job_active = false;
	switch (job.type) {
	case JOB_FILL:
		fill_gen = w->wgen;
		out_line("FILL done bytes=%llu gen=%u ms=%llu", job.hi << PAGE_SHIFT, fill_gen,
			 (now_ns(0) - job.t_start) / NSEC_PER_MSEC);
		break;
	case JOB_VERIFY:
		report_verify();
		break;
	case JOB_DIRTY:
		if (job.hi)
			out_line("DIRTY started bytes=%llu rate=%llu", job.hi << PAGE_SHIFT, job.rate);
		else
			out_line("DIRTY stopped");
		break;
	}
}

void work_stats(u64 *filled, u64 *dirtied, u64 *dbytes, u64 *drate)
{
	unsigned r;

	*filled = *dirtied = 0;
	for (r = 0; r < ncpus; r++) {
		*filled += __atomic_load_n(&workers[r].filled, __ATOMIC_RELAXED);
		*dirtied += __atomic_load_n(&workers[r].dirtied, __ATOMIC_RELAXED);
	}
	*dbytes = dirty_bytes;
	*drate = dirty_rate;
}
