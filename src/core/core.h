/* core: slices, buffers, hashing, logging, config and counters shared by every layer. */
#ifndef PINHOLE_CORE_H
#define PINHOLE_CORE_H

#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- slices: a view into bytes someone else owns ---- */

struct slice {
	const char *p;
	size_t l;
};

#define SLICE_NULL ((struct slice){NULL, 0})
#define SLICE_LIT(s) ((struct slice){(s), sizeof(s) - 1})

struct slice slice_cstr(const char *s);
bool slice_eq(struct slice a, struct slice b);
bool slice_eq_nocase(struct slice a, struct slice b);
bool slice_eq_cstr_nocase(struct slice a, const char *s);
struct slice slice_trim(struct slice s); /* strips SP, HTAB, CR, LF both ends */
/* Decimal unsigned parse of the whole slice; EINVAL if empty, not digits, or above max. */
int slice_to_u32(struct slice s, uint32_t max, uint32_t *out);
/* Copies into dst (NUL-terminated, truncated to cap-1); returns dst. */
char *slice_to_cstr(struct slice s, char *dst, size_t cap);
/* Finds a byte; returns its offset or s.l if absent. */
size_t slice_find(struct slice s, char c);
/* Takes the next sep-separated item off the front of *rest, trimmed (it may be
 * empty: "a,,b"); false once *rest is empty. */
bool slice_next_item(struct slice *rest, char sep, struct slice *item);

/* ---- buffers: growable byte arrays for building messages ----
 * Invariant: len <= cap. data is owned by the buf. */
struct buf {
	char *data;
	size_t len;
	size_t cap;
	bool failed; /* an allocation failed; the content is unusable */
};

void buf_init(struct buf *b);
void buf_free(struct buf *b);
void buf_reset(struct buf *b);
int buf_reserve(struct buf *b, size_t extra);
int buf_append(struct buf *b, const void *p, size_t l);
int buf_append_slice(struct buf *b, struct slice s);
int buf_append_cstr(struct buf *b, const char *s);
int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
struct slice buf_slice(const struct buf *b);
/* Appends s as a quoted, escaped JSON string. */
int buf_append_json_str(struct buf *b, const char *s);
/* Appends base64 of p[0..l) (RFC 4648 4: padded, no line breaks). 0 or ENOMEM. */
int buf_append_base64(struct buf *b, const void *p, size_t l);
/* Decodes padded base64 into out[cap]; *n gets the length. 0, EBADMSG, ENOSPC. */
int base64_decode(struct slice in, unsigned char *out, size_t cap, size_t *n);

/* ---- hashing ---- */

/* For in-memory tables: fast, not stable across versions. */
uint64_t hash_bytes(const void *p, size_t l);
/* FNV-1a 64, where another program must compute the same value (the
 * sip_steer eBPF program's Call-ID owner). */
uint64_t hash_fnv1a(const void *p, size_t l);
uint64_t hash_fnv1a_nocase(const void *p, size_t l); /* same, ASCII case folded */

/* Fills p with l bytes from getrandom(); aborts if the kernel cannot supply them. */
void rand_bytes(void *p, size_t l);
uint32_t rand_u32(void);

/* ---- time ---- */

uint64_t time_mono_ms(void);  /* CLOCK_MONOTONIC, milliseconds */
uint64_t time_mono_us(void);
/* Tests only, a fake clock: the two above (and so every loop's clock) jump
 * ms ahead at once, process-wide, as if that much time had passed; they
 * never go back. The server never calls it. */
void time_mono_advance(uint64_t ms);
int64_t time_wall_s(void);    /* CLOCK_REALTIME seconds, for persisted expiries */

/* ---- logging: one line per event, level and role first, to stderr ---- */

enum log_level { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG };

void log_set_level(enum log_level lvl);
enum log_level log_get_level(void);
int log_level_parse(const char *s, enum log_level *out);
void log_msg(enum log_level lvl, const char *role, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#define LOG_E(role, ...) log_msg(LOG_ERROR, role, __VA_ARGS__)
#define LOG_W(role, ...) log_msg(LOG_WARN, role, __VA_ARGS__)
#define LOG_I(role, ...) log_msg(LOG_INFO, role, __VA_ARGS__)
#define LOG_D(role, ...)                                                    \
	do {                                                                \
		if (log_get_level() >= LOG_DEBUG)                           \
			log_msg(LOG_DEBUG, role, __VA_ARGS__);              \
	} while (0)

/* One line per burst, not per event: what a stranger can trigger at will
 * (refused requests) is logged at most once per interval, with the count of
 * the events since the last line. Zero-initialised; any thread. */
struct log_burst {
	_Atomic uint64_t next_ms; /* no line before this (monotonic ms) */
	_Atomic int64_t events;   /* counted since the last line */
};
/* Counts one event; true when a line is due now, with *n the events it
 * stands for (this one included). */
bool log_burst_due(struct log_burst *b, uint64_t interval_ms, int64_t *n);

/* ---- counters: named, atomic, exported in Prometheus text format ---- */

struct metric {
	const char *name; /* e.g. "sip_requests_total" */
	const char *help;
	const char *labels; /* e.g. "class=\"2xx\"" or NULL */
	bool gauge;
	_Atomic int64_t value;
	struct metric *next; /* registry list; RO after registration */
};

/* Registers a statically allocated metric (idempotent). Call before workers start. */
void metric_register(struct metric *m);
static inline void metric_add(struct metric *m, int64_t v)
{
	atomic_fetch_add_explicit(&m->value, v, memory_order_relaxed);
}
static inline void metric_inc(struct metric *m) { metric_add(m, 1); }
static inline int64_t metric_get(struct metric *m)
{
	return atomic_load_explicit(&m->value, memory_order_relaxed);
}
/* Appends every registered metric in Prometheus text exposition format. */
int metrics_write_prometheus(struct buf *out);
/* Appends {"name{labels}": value, ...} as one JSON object. */
int metrics_write_json(struct buf *out);
/* Finds a metric by name and labels (labels may be NULL). */
struct metric *metric_find(const char *name, const char *labels);

/* ---- config: INI (libinih) against a table of declared keys ----
 *
 * Each component declares its keys with type, default, range and a one-line
 * description; the table is the reference that --help-config prints. A key
 * that is not declared, or a value out of range, is an error naming the file
 * and line. A section that appears in the file is "present"; roles use that to
 * decide whether they are enabled.
 */

enum conf_type { CONF_INT, CONF_BOOL, CONF_STR, CONF_ENUM };

struct conf_key {
	const char *section;
	const char *name;
	enum conf_type type;
	const char *def;     /* default, as it would be written in the file */
	int64_t min, max;    /* CONF_INT range */
	const char *choices; /* CONF_ENUM: "a|b|c" */
	const char *help;
};

struct conf;

/* Builds a config holding the defaults of the given NULL-terminated key
 * tables. EEXIST (logged) when two tables, or one, declare the same key. */
int conf_alloc(struct conf **cp, const struct conf_key *const *tables);
void conf_free(struct conf *c);
/* Loads a file; on error returns EINVAL and writes "file:line: message" to err. */
int conf_load_file(struct conf *c, const char *path, char *err, size_t errlen);
/* Same from a string (tests); name is used in messages. */
int conf_load_string(struct conf *c, const char *name, const char *text, char *err,
		     size_t errlen);
/* Sets one key as if read from a file (command-line overrides). */
int conf_set(struct conf *c, const char *section, const char *key, const char *value,
	     char *err, size_t errlen);
bool conf_section_present(const struct conf *c, const char *section);
/* Marks a section present (a role turned on without a file). */
void conf_section_enable(struct conf *c, const char *section);
bool conf_loaded_file(const struct conf *c); /* a file was loaded */
int64_t conf_int(const struct conf *c, const char *section, const char *key);
bool conf_bool(const struct conf *c, const char *section, const char *key);
const char *conf_str(const struct conf *c, const char *section, const char *key);
/* Writes the key reference (section, key, type, default, help) to out. */
int conf_write_help(const struct conf_key *const *tables, struct buf *out);

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

#endif
