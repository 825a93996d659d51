/* libFuzzer entry point for the record reader of parked TLS connections (src/net/tls_rec.c).
 * The input is a script: byte 0 picks the suite, the segment size and the read size; then
 * chunks of [control, length, bytes]. A chunk is either raw bytes on the wire or a record
 * sealed with the peer's key (fixed secrets) around any inner type, content and padding, so
 * the fuzzer gets past the AEAD to the inner layer (alerts, KeyUpdate, NewSessionTicket,
 * empty and oversized plaintexts) as well as mangling the framing. The stream is fed to the
 * reader in segments of the chosen size; then a write through a peer that takes few bytes. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/net_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct wire {
	const uint8_t *p;
	size_t len, off, seg;
};

static ssize_t wire_recv(void *arg, void *buf, size_t len)
{
	struct wire *w = arg;
	if (w->off == w->len)
		return 0; /* the peer's FIN */
	size_t n = w->len - w->off;
	if (n > w->seg)
		n = w->seg;
	if (n > len)
		n = len;
	memcpy(buf, w->p + w->off, n);
	w->off += n;
	return (ssize_t)n;
}

static size_t taken, take_max;

static ssize_t slow_send(void *arg, const void *buf, size_t len)
{
	(void)arg, (void)buf;
	if (taken >= take_max) {
		errno = EAGAIN;
		return -1;
	}
	size_t n = len < 7 ? len : 7;
	taken += n;
	return (ssize_t)n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > 100000)
		return 0;
	static const uint8_t s1[48] = {1, 2, 3, 4, 5, 6, 7, 8, 9}, s2[48] = {9, 8, 7};
	uint8_t suite = (uint8_t)(1 + data[0] % 3);
	bool client = data[0] & 0x80;
	struct tls_rec peer, r;
	if (tls_rec_init(&peer, suite, !client, s2, s1) || tls_rec_init(&r, suite, client, s1, s2))
		return 0;
	/* the wire, at most 4 MB */
	size_t cap = 4u << 20;
	uint8_t *stream = malloc(cap), *plain = malloc(70000);
	size_t slen = 0;
	for (size_t i = 1; i + 2 <= size;) {
		uint8_t ctl = data[i];
		size_t n = data[i + 1] | (size_t)(ctl & 0x70) << 4; /* up to 2047 */
		i += 2;
		if (n > size - i)
			n = size - i;
		if (ctl & 1) {
			/* sealed: inner plaintext = content, type (the chunk's first
			 * byte), (ctl >> 1 & 7) * 2500 zeros: past 2^14 too */
			size_t pad = (size_t)(ctl >> 1 & 7) * 2500;
			size_t cl = n ? n - 1 : 0;
			memcpy(plain, data + i + (n ? 1 : 0), cl);
			plain[cl] = n ? data[i] : 0;
			memset(plain + cl + 1, 0, pad);
			size_t t = cl + 1 + pad;
			/* tls_rec_seal appends the type: the last byte is it */
			if (slen + t + 21 > cap ||
			    tls_rec_seal(&peer, plain[t - 1], plain, t - 1, stream + slen))
				break;
			slen += t + 21;
		} else {
			if (slen + n > cap)
				break;
			memcpy(stream + slen, data + i, n);
			slen += n;
		}
		i += n;
	}
	struct wire w = {stream, slen, 0, (size_t)(data[0] >> 2 & 0x1f) * 37 + 1};
	size_t room = data[0] & 0x40 ? 70000 : 1000;
	size_t got = 0;
	for (int reads = 0; reads < 100000; reads++) {
		bool more;
		ssize_t k = tls_rec_read(&r, wire_recv, &w, plain, room, &more);
		if (k > 0) {
			if ((size_t)k > room)
				__builtin_trap();
			got += (size_t)k;
			continue;
		}
		if (k == 0 || errno != EAGAIN)
			break;
		if (w.off == w.len && !more)
			break;
	}
	if (got > slen)
		__builtin_trap(); /* data out never exceeds what came in */
	if (r.closed && r.part && !r.plain_len)
		__builtin_trap(); /* closed: no record kept half read */
	/* the write side, owed KeyUpdate included, through a peer that takes
	 * a few bytes at a time: the same bytes again until taken */
	taken = 0;
	take_max = size % 200;
	memset(plain, 'x', 20000);
	size_t sent = 0;
	for (int i = 0; i < 50 && sent < 20000; i++) {
		ssize_t k = tls_rec_write(&r, slow_send, NULL, plain, 20000 - sent);
		if (k > 0)
			sent += (size_t)k;
		else if (errno != EAGAIN)
			break;
		take_max += 4000;
	}
	tls_rec_close_notify(&r, slow_send, NULL);
	tls_rec_free(&r);
	tls_rec_free(&peer);
	free(stream);
	free(plain);
	return 0;
}
