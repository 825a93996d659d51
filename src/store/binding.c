/* Binding helpers: bounded field copies, RFC 5626 identity, canonical AORs. */
#include <errno.h>
#include <string.h>

#include "store/store.h"

int store_field_set(char *dst, size_t cap, struct slice s)
{
	if (s.l >= cap)
		return ENAMETOOLONG;
	if (s.l)
		memcpy(dst, s.p, s.l);
	dst[s.l] = '\0';
	return 0;
}

bool store_binding_same(const struct store_binding *a, const struct store_binding *b,
			store_contact_eq_h *eq)
{
	bool ao = a->instance[0] && a->reg_id;
	bool bo = b->instance[0] && b->reg_id;

	/* RFC 5626 6: with instance and reg-id the pair names the binding, so a
	 * phone that changed its contact (new NAT mapping) replaces its old one */
	if (ao || bo)
		return ao && bo && a->reg_id == b->reg_id && strcmp(a->instance, b->instance) == 0;
	if (eq)
		return eq(slice_cstr(a->contact), slice_cstr(b->contact));
	return strcmp(a->contact, b->contact) == 0;
}

int store_aor_canon(struct slice aor, char dst[STORE_AOR_MAX])
{
	aor = slice_trim(aor);
	if (!aor.l)
		return EINVAL;
	if (aor.l >= STORE_AOR_MAX)
		return ENAMETOOLONG;
	size_t at = aor.l;
	for (size_t i = 0; i < aor.l; i++) {
		if (aor.p[i] == '\0')
			return EINVAL;
		if (aor.p[i] == '@')
			at = i;
	}
	memcpy(dst, aor.p, aor.l);
	dst[aor.l] = '\0';
	/* host names are case-insensitive (RFC 3261 19.1.4), the user part is not */
	for (size_t i = at == aor.l ? 0 : at + 1; i < aor.l; i++)
		if (dst[i] >= 'A' && dst[i] <= 'Z')
			dst[i] = (char)(dst[i] - 'A' + 'a');
	return 0;
}
