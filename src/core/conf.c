/* INI configuration: libinih reads the file, a table of declared keys validates it. */
#include <errno.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core.h"

struct conf_entry {
	const struct conf_key *key;
	char *value;
};

struct conf_section {
	const char *name; /* points into the key tables, which outlive the conf */
	bool present;
};

struct conf {
	struct conf_entry *entries;
	size_t n_entries;
	struct conf_section *sections; /* at most one per key */
	size_t n_sections;
	bool loaded_file;
	/* parse state */
	const char *file;
	char *err;
	size_t errlen;
	bool failed;
	int line;
};

static struct conf_entry *find_entry(const struct conf *c, const char *section,
				     const char *name)
{
	for (size_t i = 0; i < c->n_entries; i++) {
		const struct conf_key *k = c->entries[i].key;
		if (strcasecmp(k->section, section) == 0 && strcasecmp(k->name, name) == 0)
			return &c->entries[i];
	}
	return NULL;
}

static struct conf_section *find_section(struct conf *c, const char *name)
{
	for (size_t i = 0; i < c->n_sections; i++)
		if (strcasecmp(c->sections[i].name, name) == 0)
			return &c->sections[i];
	return NULL;
}

int conf_alloc(struct conf **cp, const struct conf_key *const *tables)
{
	struct conf *c = calloc(1, sizeof *c);
	if (!c)
		return ENOMEM;
	size_t n = 0;
	for (size_t t = 0; tables[t]; t++)
		for (const struct conf_key *k = tables[t]; k->name; k++)
			n++;
	c->entries = calloc(n ? n : 1, sizeof *c->entries);
	c->sections = calloc(n ? n : 1, sizeof *c->sections);
	if (!c->entries || !c->sections) {
		free(c->entries);
		free(c->sections);
		free(c);
		return ENOMEM;
	}
	for (size_t t = 0; tables[t]; t++) {
		for (const struct conf_key *k = tables[t]; k->name; k++) {
			/* a section spans tables, a key is declared once: two
			 * modules that declare one would print it twice and read
			 * the first one's default */
			if (find_entry(c, k->section, k->name)) {
				LOG_E("config", "internal: [%s] %s declared twice", k->section, k->name);
				conf_free(c);
				return EEXIST;
			}
			struct conf_entry *e = &c->entries[c->n_entries++];
			e->key = k;
			e->value = strdup(k->def ? k->def : "");
			if (!e->value) {
				conf_free(c);
				return ENOMEM;
			}
			if (!find_section(c, k->section))
				c->sections[c->n_sections++].name = k->section;
		}
	}
	*cp = c;
	return 0;
}

void conf_free(struct conf *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->n_entries; i++)
		free(c->entries[i].value);
	free(c->entries);
	free(c->sections);
	free(c);
}

static bool parse_bool(const char *v, bool *out)
{
	static const char *const yes[] = {"1", "yes", "true", "on"};
	static const char *const no[] = {"0", "no", "false", "off"};
	for (size_t i = 0; i < ARRAY_SIZE(yes); i++) {
		if (strcasecmp(v, yes[i]) == 0) {
			*out = true;
			return true;
		}
		if (strcasecmp(v, no[i]) == 0) {
			*out = false;
			return true;
		}
	}
	return false;
}

static bool enum_has(const char *choices, const char *v)
{
	size_t vl = strlen(v);
	const char *p = choices;
	while (*p) {
		const char *bar = strchr(p, '|');
		size_t l = bar ? (size_t)(bar - p) : strlen(p);
		if (l == vl && strncasecmp(p, v, l) == 0)
			return true;
		if (!bar)
			break;
		p = bar + 1;
	}
	return false;
}

/* Checks a value against its key's type; writes "expected ..." into why on failure. */
static bool value_valid(const struct conf_key *k, const char *v, char *why, size_t whylen)
{
	switch (k->type) {
	case CONF_INT: {
		char *end;
		errno = 0;
		long long n = strtoll(v, &end, 10);
		if (errno || end == v || *end) {
			snprintf(why, whylen, "expected an integer, got \"%s\"", v);
			return false;
		}
		if (n < k->min || n > k->max) {
			snprintf(why, whylen, "expected %lld..%lld, got %lld", (long long)k->min,
				 (long long)k->max, n);
			return false;
		}
		return true;
	}
	case CONF_BOOL: {
		bool b;
		if (!parse_bool(v, &b)) {
			snprintf(why, whylen, "expected yes or no, got \"%s\"", v);
			return false;
		}
		return true;
	}
	case CONF_ENUM:
		if (!enum_has(k->choices, v)) {
			snprintf(why, whylen, "expected one of %s, got \"%s\"", k->choices, v);
			return false;
		}
		return true;
	case CONF_STR:
		return true;
	}
	return false;
}

static void set_error(struct conf *c, int line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void set_error(struct conf *c, int line, const char *fmt, ...)
{
	if (c->failed)
		return; /* keep the first error */
	c->failed = true;
	int n = snprintf(c->err, c->errlen, "%s:%d: ", c->file, line);
	if (n < 0 || (size_t)n >= c->errlen)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->err + n, c->errlen - (size_t)n, fmt, ap);
	va_end(ap);
}

static int assign(struct conf *c, int line, const char *section, const char *name,
		  const char *value)
{
	struct conf_entry *e = find_entry(c, section, name);
	if (!e) {
		if (!find_section(c, section))
			set_error(c, line, "unknown section [%s]", section);
		else
			set_error(c, line, "unknown key \"%s\" in [%s]", name, section);
		return EINVAL;
	}
	char why[160];
	if (!value_valid(e->key, value, why, sizeof why)) {
		set_error(c, line, "[%s] %s: %s", section, name, why);
		return EINVAL;
	}
	char *dup = strdup(value);
	if (!dup)
		return ENOMEM;
	free(e->value);
	e->value = dup;
	return 0;
}

static int conf_ini_handler(void *user, const char *section, const char *name, const char *value)
{
	struct conf *c = user;
	return assign(c, c->line, section, name, value) == 0;
}

/* inih reads lines without telling the handler which one; feeding it one line
 * at a time (with the section carried along) gives every error its line. */
struct line_reader {
	const char *p;
	bool done;
};

static char *line_reader_next(char *str, int num, void *stream)
{
	struct line_reader *r = stream;
	if (r->done || !*r->p)
		return NULL;
	const char *nl = strchr(r->p, '\n');
	size_t l = nl ? (size_t)(nl - r->p + 1) : strlen(r->p);
	if (l >= (size_t)num)
		l = (size_t)num - 1;
	memcpy(str, r->p, l);
	str[l] = '\0';
	r->p += l;
	return str;
}

static int load_text(struct conf *c, const char *name, const char *text, char *err,
		     size_t errlen)
{
	c->file = name;
	c->err = err;
	c->errlen = errlen;
	c->failed = false;
	char section[64] = "";
	const char *p = text;
	if (strncmp(p, "\xEF\xBB\xBF", 3) == 0)
		p += 3; /* UTF-8 byte order mark, as editors on some systems write it */
	int line = 0;
	while (*p && !c->failed) {
		line++;
		const char *nl = strchr(p, '\n');
		size_t l = nl ? (size_t)(nl - p) : strlen(p);
		struct slice s = slice_trim((struct slice){p, l});
		if (s.l && s.p[0] == '[') {
			size_t close = slice_find(s, ']');
			if (close == s.l || close < 2 || close - 1 >= sizeof section) {
				set_error(c, line, "malformed section header");
				break;
			}
			struct slice secname = slice_trim((struct slice){s.p + 1, close - 1});
			if (secname.l == 0) {
				set_error(c, line, "malformed section header");
				break;
			}
			slice_to_cstr(secname, section, sizeof section);
			struct conf_section *sec = find_section(c, section);
			if (!sec) {
				set_error(c, line, "unknown section [%s]", section);
				break;
			}
			sec->present = true;
		} else if (s.l && s.p[0] != ';' && s.p[0] != '#') {
			if (!section[0]) {
				set_error(c, line, "key outside any section");
				break;
			}
			if (slice_find(s, '=') == s.l && slice_find(s, ':') == s.l) {
				set_error(c, line, "expected key = value");
				break;
			}
			/* inih reads at most INI_MAX_LINE - 1 bytes a line and would take
			 * the rest of a longer one as a line of its own */
			if (s.l + 1 >= (size_t)INI_MAX_LINE) {
				set_error(c, line, "line too long (at most %d characters)",
					  INI_MAX_LINE - 2);
				break;
			}
			/* one line, prefixed with its section, through inih */
			char one[sizeof section + INI_MAX_LINE + 4];
			int n = snprintf(one, sizeof one, "[%s]\n%.*s\n", section, (int)s.l, s.p);
			if (n < 0 || (size_t)n >= sizeof one) {
				set_error(c, line, "line too long");
				break;
			}
			struct line_reader r = {one, false};
			c->line = line;
			int rc = ini_parse_stream(line_reader_next, &r, conf_ini_handler, c);
			if (rc != 0 && !c->failed)
				set_error(c, line, "cannot parse line");
		}
		if (!nl)
			break;
		p = nl + 1;
	}
	return c->failed ? EINVAL : 0;
}

int conf_load_string(struct conf *c, const char *name, const char *text, char *err,
		     size_t errlen)
{
	return load_text(c, name, text, err, errlen);
}

int conf_load_file(struct conf *c, const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		int e = errno ? errno : EIO;
		snprintf(err, errlen, "%s: %s", path, strerror(e));
		return e;
	}
	struct buf b;
	buf_init(&b);
	char chunk[4096];
	size_t n;
	while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
		buf_append(&b, chunk, n);
	bool rd_err = ferror(f);
	fclose(f);
	if (rd_err) {
		buf_free(&b);
		snprintf(err, errlen, "%s: read error", path);
		return EIO;
	}
	buf_append(&b, "", 1);
	if (b.failed) {
		buf_free(&b);
		snprintf(err, errlen, "%s: out of memory", path);
		return ENOMEM;
	}
	int rc = load_text(c, path, b.data, err, errlen);
	buf_free(&b);
	if (rc == 0)
		c->loaded_file = true;
	return rc;
}

int conf_set(struct conf *c, const char *section, const char *key, const char *value,
	     char *err, size_t errlen)
{
	c->file = "command line";
	c->err = err;
	c->errlen = errlen;
	c->failed = false;
	return assign(c, 0, section, key, value);
}

bool conf_section_present(const struct conf *c, const char *section)
{
	for (size_t i = 0; i < c->n_sections; i++)
		if (strcasecmp(c->sections[i].name, section) == 0)
			return c->sections[i].present;
	return false;
}

void conf_section_enable(struct conf *c, const char *section)
{
	struct conf_section *s = find_section(c, section);
	if (s)
		s->present = true;
}

bool conf_loaded_file(const struct conf *c)
{
	return c->loaded_file;
}

static const char *value_of(const struct conf *c, const char *section, const char *key)
{
	struct conf_entry *e = find_entry(c, section, key);
	if (!e) {
		LOG_E("config", "internal: undeclared key [%s] %s", section, key);
		abort();
	}
	return e->value;
}

int64_t conf_int(const struct conf *c, const char *section, const char *key)
{
	return strtoll(value_of(c, section, key), NULL, 10);
}

bool conf_bool(const struct conf *c, const char *section, const char *key)
{
	bool b = false;
	parse_bool(value_of(c, section, key), &b);
	return b;
}

const char *conf_str(const struct conf *c, const char *section, const char *key)
{
	return value_of(c, section, key);
}

int conf_write_help(const struct conf_key *const *tables, struct buf *out)
{
	const char *last = NULL;
	static const char *const type_names[] = {"integer", "yes|no", "string", "enum"};
	for (size_t t = 0; tables[t]; t++) {
		for (const struct conf_key *k = tables[t]; k->name; k++) {
			if (!last || strcmp(last, k->section) != 0)
				buf_printf(out, "%s[%s]\n", last ? "\n" : "", k->section);
			last = k->section;
			buf_printf(out, "%-18s = %-24s ; %s", k->name, k->def ? k->def : "",
				   k->help);
			if (k->type == CONF_INT)
				buf_printf(out, " (%lld..%lld)", (long long)k->min, (long long)k->max);
			else if (k->type == CONF_ENUM)
				buf_printf(out, " (%s)", k->choices);
			else
				buf_printf(out, " (%s)", type_names[k->type]);
			buf_append_cstr(out, "\n");
		}
	}
	return out->failed ? ENOMEM : 0;
}
