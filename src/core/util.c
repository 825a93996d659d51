/* Hashing, randomness, clocks and logging. */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#include "core.h"

/* Eight bytes per multiply instead of FNV's one: transaction keys are 60-100
 * bytes and are hashed several times per message. The tail is read as two
 * overlapping words (or three bytes), the length mixed in first, and the
 * result finished so that the low bits a table masks off depend on every
 * input bit. */
uint64_t hash_bytes(const void *p, size_t l)
{
	const unsigned char *s = p;
	uint64_t h = 0x9e3779b97f4a7c15ULL ^ (l * 0xff51afd7ed558ccdULL);
	for (; l >= 8; s += 8, l -= 8) {
		uint64_t w;
		memcpy(&w, s, 8);
		h = (h ^ w) * 0xbf58476d1ce4e5b9ULL;
		h ^= h >> 31;
	}
	uint64_t w = 0;
	if (l >= 4) {
		uint32_t a, b;
		memcpy(&a, s, 4);
		memcpy(&b, s + l - 4, 4);
		w = (uint64_t)a << 32 | b;
	} else if (l) {
		w = (uint64_t)s[0] << 16 | (uint64_t)s[l / 2] << 8 | s[l - 1];
	}
	h = (h ^ w) * 0x94d049bb133111ebULL;
	h ^= h >> 32;
	h *= 0xbf58476d1ce4e5b9ULL;
	return h ^ (h >> 29);
}

uint64_t hash_fnv1a(const void *p, size_t l)
{
	const unsigned char *s = p;
	uint64_t h = 14695981039346656037ULL;
	for (size_t i = 0; i < l; i++) {
		h ^= s[i];
		h *= 1099511628211ULL;
	}
	return h;
}

uint64_t hash_fnv1a_nocase(const void *p, size_t l)
{
	const unsigned char *s = p;
	uint64_t h = 14695981039346656037ULL;
	for (size_t i = 0; i < l; i++) {
		unsigned char c = s[i];
		if (c >= 'A' && c <= 'Z')
			c = (unsigned char)(c + 32);
		h ^= c;
		h *= 1099511628211ULL;
	}
	return h;
}

static void rand_fill(void *p, size_t l)
{
	unsigned char *out = p;
	while (l) {
		ssize_t n = getrandom(out, l, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			abort(); /* no entropy means no safe tokens or branches */
		}
		out += n;
		l -= (size_t)n;
	}
}

/* Bytes from the kernel CSPRNG, drawn 256 at a time per thread: a branch or
 * tag per message would otherwise cost a getrandom() system call each. */
void rand_bytes(void *p, size_t l)
{
	static _Thread_local unsigned char pool[256];
	static _Thread_local size_t left;
	unsigned char *out = p;
	if (l > sizeof pool) {
		rand_fill(out, l);
		return;
	}
	while (l) {
		if (!left) {
			rand_fill(pool, sizeof pool);
			left = sizeof pool;
		}
		size_t n = MIN(l, left);
		memcpy(out, pool + sizeof pool - left, n);
		/* used bytes are wiped so a later memory disclosure cannot replay them */
		memset(pool + sizeof pool - left, 0, n);
		left -= n;
		out += n;
		l -= n;
	}
}

uint32_t rand_u32(void)
{
	uint32_t v;
	rand_bytes(&v, sizeof v);
	return v;
}

/* microseconds added to CLOCK_MONOTONIC (time_mono_advance); 0 outside tests */
static _Atomic uint64_t mono_skew_us;

void time_mono_advance(uint64_t ms)
{
	atomic_fetch_add(&mono_skew_us, ms * 1000u);
}

uint64_t time_mono_ms(void)
{
	return time_mono_us() / 1000u;
}

uint64_t time_mono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u +
	       atomic_load_explicit(&mono_skew_us, memory_order_relaxed);
}

int64_t time_wall_s(void)
{
	return (int64_t)time(NULL);
}

static _Atomic int log_level = LOG_INFO;
static const char *const level_names[] = {"error", "warn", "info", "debug"};

void log_set_level(enum log_level lvl)
{
	log_level = (int)lvl;
}

enum log_level log_get_level(void)
{
	return (enum log_level)log_level;
}

int log_level_parse(const char *s, enum log_level *out)
{
	for (size_t i = 0; i < ARRAY_SIZE(level_names); i++) {
		if (strcasecmp(s, level_names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	return EINVAL;
}

void log_msg(enum log_level lvl, const char *role, const char *fmt, ...)
{
	if ((int)lvl > log_level)
		return;
	/* one write per line so that lines of several threads do not interleave */
	char line[1024];
	if ((unsigned)lvl >= ARRAY_SIZE(level_names))
		lvl = LOG_DEBUG;
	int n = snprintf(line, sizeof line, "%s %s: ", level_names[lvl], role ? role : "-");
	if (n < 0)
		return;
	if ((size_t)n > sizeof line / 2) /* a runaway role string: keep room for the text */
		n = (int)(sizeof line / 2);
	va_list ap;
	va_start(ap, fmt);
	int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (m < 0)
		return;
	size_t len = MIN((size_t)n + (size_t)m, sizeof line - 2);
	for (size_t i = (size_t)n; i < len; i++) /* one event, one line */
		if (line[i] == '\r' || line[i] == '\n')
			line[i] = ' ';
	line[len++] = '\n';
	fwrite(line, 1, len, stderr);
}

bool log_burst_due(struct log_burst *b, uint64_t interval_ms, int64_t *n)
{
	atomic_fetch_add(&b->events, 1);
	uint64_t now = time_mono_ms(), next = atomic_load(&b->next_ms);
	/* one thread wins the line; the others only count */
	if (now < next || !atomic_compare_exchange_strong(&b->next_ms, &next, now + interval_ms))
		return false;
	*n = atomic_exchange(&b->events, 0);
	return true;
}
