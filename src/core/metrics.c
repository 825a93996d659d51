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
	for (struct metric *it = registry; it; it = it->next) {
		if (strcmp(it->name, name) != 0)
			continue;
		if (!labels && !it->labels)
			return it;
		if (labels && it->labels && strcmp(labels, it->labels) == 0)
			return it;
	}
	return NULL;
}

int metrics_write_prometheus(struct buf *out)
{
	const char *last = NULL;
	for (struct metric *it = registry; it; it = it->next) {
		if (!last || strcmp(last, it->name) != 0) {
			buf_printf(out, "# HELP pinhole_%s %s\n# TYPE pinhole_%s %s\n", it->name,
				   it->help, it->name, it->gauge ? "gauge" : "counter");
			last = it->name;
		}
		if (it->labels)
			buf_printf(out, "pinhole_%s{%s} %lld\n", it->name, it->labels,
				   (long long)metric_get(it));
		else
			buf_printf(out, "pinhole_%s %lld\n", it->name, (long long)metric_get(it));
	}
	return out->failed ? ENOMEM : 0;
}

int metrics_write_json(struct buf *out)
{
	buf_append_cstr(out, "{");
	bool first = true;
	for (struct metric *it = registry; it; it = it->next) {
		buf_printf(out, "%s\"%s", first ? "" : ",", it->name);
		if (it->labels) {
			/* labels hold quotes: render k="v" as k=v inside the JSON key */
			buf_append_cstr(out, "{");
			for (const char *c = it->labels; *c; c++)
				if (*c != '"')
					buf_append(out, c, 1);
			buf_append_cstr(out, "}");
		}
		buf_printf(out, "\":%lld", (long long)metric_get(it));
		first = false;
	}
	buf_append_cstr(out, "}");
	return out->failed ? ENOMEM : 0;
}
