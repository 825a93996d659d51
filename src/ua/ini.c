/* ua: its INI config file (`pinhole ua --config FILE`): key = value lines whose keys are the
 * long options' names, read through inih one line at a time so each error names its line. */
#include <errno.h>
#include <ini.h>
#include <stdio.h>
#include <string.h>

#include "ua/ua.h"

struct one_line {
	ua_ini_h *h;
	void *arg;
	unsigned line;
	int rc;
	bool called;
};

static int on_pair(void *user, const char *section, const char *name, const char *value)
{
	(void)section;
	struct one_line *o = user;
	o->called = true;
	o->rc = o->h(name, value, o->line, o->arg);
	return o->rc == 0;
}

int ua_ini_parse(const char *name, const char *text, ua_ini_h *h, void *arg, char *err,
		 size_t errlen)
{
	const char *p = text;
	if (strncmp(p, "\xEF\xBB\xBF", 3) == 0)
		p += 3; /* a byte order mark, as some editors write it */
	unsigned line = 0;
	while (*p) {
		line++;
		const char *nl = strchr(p, '\n');
		size_t l = nl ? (size_t)(nl - p) : strlen(p);
		struct slice s = slice_trim((struct slice){p, l});
		p = nl ? nl + 1 : p + l;
		if (!s.l || s.p[0] == ';' || s.p[0] == '#')
			continue;
		if (s.p[0] == '[') {
			/* one section, [ua], so that a file can also hold other sections'
			 * keys for other tools only if it says which are ours */
			if (!slice_eq_cstr_nocase(s, "[ua]")) {
				snprintf(err, errlen, "%s:%u: unknown section %.*s (only [ua])",
					 name, line, (int)MIN(s.l, (size_t)64), s.p);
				return EINVAL;
			}
			continue;
		}
		if (slice_find(s, '=') == s.l || s.p[0] == '=') {
			snprintf(err, errlen, "%s:%u: expected key = value", name, line);
			return EINVAL;
		}
		/* inih reads at most INI_MAX_LINE - 1 bytes a line and would take the
		 * rest of a longer one as a line of its own */
		if (s.l + 2 >= (size_t)INI_MAX_LINE) {
			snprintf(err, errlen, "%s:%u: line too long (at most %d characters)", name,
				 line, INI_MAX_LINE - 3);
			return EINVAL;
		}
		char one[INI_MAX_LINE + 8];
		snprintf(one, sizeof one, "[ua]\n%.*s\n", (int)s.l, s.p);
		struct one_line o = {.h = h, .arg = arg, .line = line};
		int rc = ini_parse_string(one, on_pair, &o);
		if (o.called && o.rc) {
			/* the handler's own message, after the place */
			char msg[256];
			snprintf(msg, sizeof msg, "%s", err);
			snprintf(err, errlen, "%s:%u: %s", name, line, msg);
			return o.rc;
		}
		if (rc || !o.called) {
			snprintf(err, errlen, "%s:%u: cannot parse this line", name, line);
			return EINVAL;
		}
	}
	return 0;
}
