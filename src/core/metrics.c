/* Counter registry, exported as Prometheus text and as JSON for pinhole ctl. */
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "core.h"

static struct metric *registry;
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;

void metric_register(struct metric *m)
{
	pthread_mutex_lock(&registry_lock);
	for (struct metric *it = registry; it; it = it->next) {
		if (it == m) {
			pthread_mutex_unlock(&registry_lock);
			return;
		}
	}
	/* append, so that output keeps registration order */
	struct metric **tail = &registry;
	while (*tail)
		tail = &(*tail)->next;
	m->next = NULL;
	*tail = m;
	pthread_mutex_unlock(&registry_lock);
}

struct metric *metric_find(const char *name, const char *labels)
{
	struct metric *found = NULL;
	pthread_mutex_lock(&registry_lock);
	for (struct metric *it = registry; it && !found; it = it->next) {
		if (strcmp(it->name, name) != 0)
			continue;
		if ((!labels && !it->labels) ||
		    (labels && it->labels && strcmp(labels, it->labels) == 0))
			found = it;
	}
	pthread_mutex_unlock(&registry_lock);
	return found;
}

static void write_prom_sample(struct buf *out, struct metric *m)
{
	if (m->labels)
		buf_printf(out, "pinhole_%s{%s} %lld\n", m->name, m->labels,
			   (long long)metric_get(m));
	else
		buf_printf(out, "pinhole_%s %lld\n", m->name, (long long)metric_get(m));
}

/* One HELP/TYPE header per metric family followed by all of its samples, even
 * when the family's label variants were registered apart from each other
 * (the exposition format rejects a family that appears twice). */
int metrics_write_prometheus(struct buf *out)
{
	pthread_mutex_lock(&registry_lock);
	for (struct metric *it = registry; it; it = it->next) {
		bool seen = false;
		for (struct metric *p = registry; p != it; p = p->next)
			if (strcmp(p->name, it->name) == 0) {
				seen = true;
				break;
			}
		if (seen)
			continue;
		buf_printf(out, "# HELP pinhole_%s %s\n# TYPE pinhole_%s %s\n", it->name,
			   it->help ? it->help : "", it->name, it->gauge ? "gauge" : "counter");
		for (struct metric *m = it; m; m = m->next)
			if (strcmp(m->name, it->name) == 0)
				write_prom_sample(out, m);
	}
	pthread_mutex_unlock(&registry_lock);
	return out->failed ? ENOMEM : 0;
}

int metrics_write_json(struct buf *out)
{
	pthread_mutex_lock(&registry_lock);
	buf_append_cstr(out, "{");
	bool first = true;
	for (struct metric *it = registry; it; it = it->next) {
		buf_printf(out, "%s\"%s", first ? "" : ",", it->name);
		if (it->labels) {
			/* labels hold quotes: render k="v" as k=v inside the JSON key */
			buf_append_cstr(out, "{");
			for (const char *c = it->labels; *c; c++) {
				if (*c == '"')
					continue;
				if (*c == '\\' || (unsigned char)*c < 0x20)
					buf_printf(out, "\\u%04x", (unsigned char)*c);
				else
					buf_append(out, c, 1);
			}
			buf_append_cstr(out, "}");
		}
		buf_printf(out, "\":%lld", (long long)metric_get(it));
		first = false;
	}
	buf_append_cstr(out, "}");
	pthread_mutex_unlock(&registry_lock);
	return out->failed ? ENOMEM : 0;
}
