/* [tls]: the certificates, trust and bounds of the TLS transport, read into net's TLS layer. */
#include <errno.h>
#include <string.h>

#include "edge_int.h"

#define TLS_CIPHERS_DEFAULT "ECDHE+AESGCM:ECDHE+CHACHA20"

const struct conf_key edge_tls_conf_keys[] = {
	{"tls", "certificate", CONF_STR, "", 0, 0, NULL,
	 "PEM certificate of tls: listeners, the chain's intermediates after it; needed for a "
	 "tls: listener, also offered to next hops that ask for one"},
	{"tls", "private_key", CONF_STR, "", 0, 0, NULL, "PEM private key of certificate"},
	{"tls", "sni_certificates", CONF_STR, "", 0, 0, NULL,
	 "more certificates as CERT:KEY list; each is served to clients whose SNI it names "
	 "(its DNS names, wildcards too), the default certificate to the others"},
	{"tls", "ca_file", CONF_STR, "", 0, 0, NULL,
	 "PEM CA certificates that peers' certificates are checked against (client "
	 "certificates, next hops); empty = the system trust store"},
	{"tls", "verify_client", CONF_ENUM, "no", 0, 0, "no|optional|require",
	 "client certificates (mutual TLS): not asked, checked when sent, or required"},
	{"tls", "verify_server", CONF_BOOL, "yes", 0, 0, NULL,
	 "outgoing TLS: check the next hop's certificate chain and that it names the address "
	 "connected to (RFC 5922); no = encrypt without authenticating (tests only)"},
	{"tls", "min_version", CONF_ENUM, "1.2", 0, 0, "1.2|1.3", "oldest TLS version accepted"},
	{"tls", "ciphers", CONF_STR, TLS_CIPHERS_DEFAULT, 0, 0, NULL,
	 "TLS 1.2 cipher list (OpenSSL syntax)"},
	{"tls", "ciphersuites", CONF_STR, "", 0, 0, NULL,
	 "TLS 1.3 suites in order of preference (OpenSSL syntax); empty = OpenSSL's three with "
	 "TLS_AES_128_GCM_SHA256 first (a full handshake 10 % cheaper than with AES-256's "
	 "SHA-384)"},
	{"tls", "groups", CONF_STR, "", 0, 0, NULL,
	 "key exchange groups accepted from clients (OpenSSL syntax); empty = X25519:P-256; "
	 "OpenSSL's own default also takes finite-field groups, which let a client make each "
	 "handshake cost up to 500 times more (ffdhe8192)"},
	{"tls", "handshake_timeout", CONF_INT, "5", 1, 600, NULL,
	 "seconds a TLS handshake may take; then the connection is closed and counted; a "
	 "connection that sends nothing is held that long by the kernel (TCP_DEFER_ACCEPT), "
	 "then accepted and closed at once"},
	{"tls", "max_handshakes", CONF_INT, "256", 1, 1000000, NULL,
	 "incoming TLS handshakes in progress at once; connections beyond are closed at "
	 "accept and counted (tls_handshakes_limited_total)"},
	{"tls", "park", CONF_BOOL, "yes", 0, 0, NULL,
	 "TLS 1.3 connections (AES-GCM, ChaCha20-Poly1305) leave OpenSSL after the handshake "
	 "for pinhole's own record layer, keeping about 0.4 KB instead of OpenSSL's 14 KB "
	 "per connection; no = OpenSSL throughout"},
	{"tls", "expiry_warning", CONF_INT, "21", 0, 3650, NULL,
	 "days: a certificate expiring sooner is warned about at start"},
	{NULL, NULL, 0, NULL, 0, 0, NULL, NULL},
};

/* Whether the listen list names a tls: listener. */
static bool wants_tls(const char *listen)
{
	for (const char *p = listen; (p = strstr(p, "tls:")); p += 4)
		if (p == listen || p[-1] == ',' || p[-1] == ' ')
			return true;
	return false;
}

int edge_tls_setup(struct net *n, const struct conf *c)
{
	const char *listen = conf_str(c, "sip", "listen");
	char err[512];
	if (!conf_section_present(c, "tls") && !wants_tls(listen)) {
		/* no [tls]: outgoing TLS only, on the defaults (and programs
		 * whose config tables lack [tls], such as tests, read none) */
		struct net_tls_conf def = {.verify_server = true, .ciphers = TLS_CIPHERS_DEFAULT,
					   .park = true};
		if (net_tls_setup(n, &def, err, sizeof err))
			LOG_W("edge", "no outgoing TLS: %s", err);
		return 0;
	}
	const char *vc = conf_str(c, "tls", "verify_client");
	struct net_tls_conf tc = {
		.certificate = conf_str(c, "tls", "certificate"),
		.private_key = conf_str(c, "tls", "private_key"),
		.sni = conf_str(c, "tls", "sni_certificates"),
		.ca_file = conf_str(c, "tls", "ca_file"),
		.verify_client = strcmp(vc, "require") == 0 ? 2 : strcmp(vc, "optional") == 0,
		.verify_server = conf_bool(c, "tls", "verify_server"),
		.ciphers = conf_str(c, "tls", "ciphers"),
		.ciphersuites = conf_str(c, "tls", "ciphersuites"),
		.groups = conf_str(c, "tls", "groups"),
		.tls13_only = strcmp(conf_str(c, "tls", "min_version"), "1.3") == 0,
		.handshake_s = (unsigned)conf_int(c, "tls", "handshake_timeout"),
		.max_handshakes = (unsigned)conf_int(c, "tls", "max_handshakes"),
		.expiry_warn_days = (unsigned)conf_int(c, "tls", "expiry_warning"),
		.park = conf_bool(c, "tls", "park"),
	};
	if (wants_tls(listen) && !tc.certificate[0]) {
		LOG_E("edge", "[sip] listen has a tls: listener but [tls] certificate is not set");
		return EINVAL;
	}
	int rc = net_tls_setup(n, &tc, err, sizeof err);
	if (rc) {
		LOG_E("edge", "%s", err);
		return rc;
	}
	return 0;
}
