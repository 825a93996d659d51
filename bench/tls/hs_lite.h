/* tls_bench's light TLS 1.3 client (hs_lite.c): a full handshake for the server, cheap for us. */
#ifndef HS_LITE_H
#define HS_LITE_H

struct lite;
int lite_init(void); /* once; -1 if OpenSSL lacks what it needs */
struct lite *lite_new(void);
void lite_reset(struct lite *l); /* for a new connection */
/* Drives the handshake on fd (non-blocking, connected): sends the ClientHello
 * on the first call, then takes what came. 1 when the server answered a CRLF
 * keepalive after the handshake, 0 to wait for input, -1 on failure. */
int lite_step(struct lite *l, int fd);

#endif
