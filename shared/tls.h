/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * OpenSSL contexts for the uplink: TLS 1.3 by default (1.2 by configuration),
 * mutual authentication against one CA file, optional CRL checking.
 */
#ifndef PCAPLINE_SHARED_TLS_H
#define PCAPLINE_SHARED_TLS_H

#include <stddef.h>
#include <openssl/ssl.h>

/* ca, cert and key are paths, or the PEM text itself when it starts with
 * "-----BEGIN " (certificates from a secret passed as an environment variable). */
struct tls_opts {
	const char *ca;   /* CA bundle that peers' certificates must chain to */
	const char *cert; /* our certificate (chain) */
	const char *key;  /* our private key */
	const char *crl;  /* optional CRL file ("" or NULL: none) */
	int min_version;  /* 12 or 13 */
};

/* Return a new context or NULL with a one-line reason in err naming the file at fault. */
SSL_CTX *tls_ctx_server(const struct tls_opts *o, char *err, size_t errlen);
SSL_CTX *tls_ctx_client(const struct tls_opts *o, char *err, size_t errlen);

/* Makes the client check that the server certificate is valid for `name` (a DNS name
 * or an IP address literal). Returns 0 or -1. */
int tls_client_expect(SSL *ssl, const char *name);

/* Why a certificate yields no identity (tls_identity_strerror() says it in words). */
enum {
	TLS_ID_NO_CERT = -1,    /* the peer sent none */
	TLS_ID_NO_CN = -2,      /* the subject has no CN */
	TLS_ID_MANY_CN = -3,    /* more than one CN: ambiguous, refused */
	TLS_ID_BAD_CN = -4,     /* empty, too long, not a text string, or not printable ASCII */
	TLS_ID_UNREADABLE = -5, /* the PEM file cannot be read */
};

/* Copies the peer certificate's identity (its subject's one CN) into out.
 * Returns 0 or a TLS_ID_* code. */
int tls_peer_identity(SSL *ssl, char *out, size_t outlen);

/* Copies the one subject CN of the certificate in PEM file `path` (or PEM text) into out (a sensor
 * uses it as its default identity). Returns 0 or a TLS_ID_* code. */
int tls_cert_identity(const char *path, char *out, size_t outlen);

/* The reason for a TLS_ID_* code, for a log line. */
const char *tls_identity_strerror(int rc);

/* Drains OpenSSL's error queue into buf as one line ("" if empty); returns buf. */
const char *tls_errors(char *buf, size_t buflen);

/* Describes a failed verification of the peer ("certificate has expired", ...). */
const char *tls_verify_reason(SSL *ssl);

#endif
