/* SPDX-License-Identifier: BSD-2-Clause */
#include "shared/tls.h"
#include "shared/log.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

const char *
tls_errors(char *buf, size_t buflen)
{
	size_t n = 0;
	unsigned long e;
	buf[0] = '\0';
	while ((e = ERR_get_error()) != 0) {
		char one[256];
		ERR_error_string_n(e, one, sizeof(one));
		/* Keep only the reason part: "error:0A000086:SSL routines::certificate verify failed". */
		const char *r = strrchr(one, ':');
		r = r ? r + 1 : one;
		int m = snprintf(buf + n, buflen - n, "%s%s", n ? "; " : "", r);
		if (m < 0 || (size_t)m >= buflen - n)
			break;
		n += (size_t)m;
	}
	return buf;
}

const char *
tls_verify_reason(SSL *ssl)
{
	long v = SSL_get_verify_result(ssl);
	return X509_verify_cert_error_string(v);
}

/* tls.ca, tls.cert and tls.key may hold the PEM text itself instead of a path: a
 * container configured only by environment variables gets its certificates from a
 * secret store that way (an ECS "secrets" entry, a Kubernetes secretKeyRef). */
static bool
tls_is_inline(const char *v)
{
	return strncmp(v, "-----BEGIN ", 11) == 0;
}

/* How a setting is named in messages: its path, or "(PEM text)" for inline PEM, which
 * may hold a private key and never goes into a log. */
static const char *
tls_label(const char *v)
{
	return tls_is_inline(v) ? "(PEM text)" : v;
}

static BIO *
tls_bio(const char *v)
{
	return tls_is_inline(v) ? BIO_new_mem_buf(v, -1) : BIO_new_file(v, "r");
}

/* Every certificate of the PEM text `v` into the context's trust store. */
static int
tls_load_ca_inline(SSL_CTX *ctx, const char *v)
{
	BIO *b = tls_bio(v);
	STACK_OF(X509_INFO) *infos = b ? PEM_X509_INFO_read_bio(b, NULL, NULL, NULL) : NULL;
	X509_STORE *store = SSL_CTX_get_cert_store(ctx);
	int n = 0;
	for (int i = 0; infos && i < sk_X509_INFO_num(infos); i++) {
		X509_INFO *xi = sk_X509_INFO_value(infos, i);
		if (xi->x509 && X509_STORE_add_cert(store, xi->x509) == 1)
			n++;
	}
	sk_X509_INFO_pop_free(infos, X509_INFO_free);
	BIO_free(b);
	return n > 0 ? 1 : 0;
}

/* The certificate, then any intermediates after it, from the PEM text `v`. */
static int
tls_load_chain_inline(SSL_CTX *ctx, const char *v)
{
	BIO *b = tls_bio(v);
	X509 *x = b ? PEM_read_bio_X509_AUX(b, NULL, NULL, NULL) : NULL;
	int ok = x && SSL_CTX_use_certificate(ctx, x) == 1;
	X509_free(x);
	while (ok && (x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
		if (SSL_CTX_add0_chain_cert(ctx, x) != 1) {
			X509_free(x);
			ok = 0;
		}
	}
	/* The end of the text ends the chain; it is no error. */
	ERR_clear_error();
	BIO_free(b);
	return ok ? 1 : 0;
}

static int
tls_load_key_inline(SSL_CTX *ctx, const char *v)
{
	BIO *b = tls_bio(v);
	EVP_PKEY *k = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
	int ok = k && SSL_CTX_use_PrivateKey(ctx, k) == 1;
	EVP_PKEY_free(k);
	BIO_free(b);
	return ok ? 1 : 0;
}

static SSL_CTX *
tls_ctx_common(const SSL_METHOD *method, const struct tls_opts *o, char *err, size_t errlen)
{
	char why[512];
	SSL_CTX *ctx = SSL_CTX_new(method);
	if (!ctx) {
		snprintf(err, errlen, "tls: cannot create context: %s", tls_errors(why, sizeof(why)));
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, o->min_version == 12 ? TLS1_2_VERSION : TLS1_3_VERSION);
	SSL_CTX_set_mode(ctx,
		SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
			SSL_MODE_RELEASE_BUFFERS);
	/* Renegotiation and compression are attack surface we never need. */
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);

	if (!o->ca || !*o->ca) {
		snprintf(err, errlen, "tls: no CA file configured (tls.ca)");
		goto fail;
	}
	if (!o->cert || !*o->cert || !o->key || !*o->key) {
		snprintf(err, errlen, "tls: certificate and key are required (tls.cert, tls.key)");
		goto fail;
	}
	const char *files[][2] = { { "CA file", o->ca }, { "certificate", o->cert }, { "key", o->key },
		{ "CRL", o->crl && *o->crl ? o->crl : NULL } };
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		if (files[i][1] && tls_is_inline(files[i][1]) && i < 3)
			continue;
		FILE *f = files[i][1] ? fopen(files[i][1], "r") : NULL;
		if (files[i][1] && !f) {
			snprintf(err, errlen, "tls: cannot read %s %s: %s", files[i][0], files[i][1],
				strerror(errno));
			goto fail;
		}
		if (f)
			fclose(f);
	}
	if ((tls_is_inline(o->ca) ? tls_load_ca_inline(ctx, o->ca)
				  : SSL_CTX_load_verify_locations(ctx, o->ca, NULL)) != 1) {
		snprintf(err, errlen, "tls: cannot load CA file %s: %s", tls_label(o->ca),
			tls_errors(why, sizeof(why)));
		goto fail;
	}
	if ((tls_is_inline(o->cert) ? tls_load_chain_inline(ctx, o->cert)
				    : SSL_CTX_use_certificate_chain_file(ctx, o->cert)) != 1) {
		snprintf(err, errlen, "tls: cannot load certificate %s: %s", tls_label(o->cert),
			tls_errors(why, sizeof(why)));
		goto fail;
	}
	if ((tls_is_inline(o->key) ? tls_load_key_inline(ctx, o->key)
				   : SSL_CTX_use_PrivateKey_file(ctx, o->key, SSL_FILETYPE_PEM)) != 1) {
		snprintf(err, errlen, "tls: cannot load key %s: %s", tls_label(o->key),
			tls_errors(why, sizeof(why)));
		goto fail;
	}
	X509 *own = SSL_CTX_get0_certificate(ctx);
	if (own && X509_cmp_current_time(X509_get0_notAfter(own)) < 0)
		log_warnx("tls: certificate %s has expired: peers will refuse it", tls_label(o->cert));
	else if (own && X509_cmp_current_time(X509_get0_notBefore(own)) > 0)
		log_warnx("tls: certificate %s is not valid yet: peers will refuse it", tls_label(o->cert));
	if (SSL_CTX_check_private_key(ctx) != 1) {
		snprintf(err, errlen, "tls: key %s does not match certificate %s", tls_label(o->key),
			tls_label(o->cert));
		goto fail;
	}
	if (o->crl && *o->crl) {
		X509_STORE *store = SSL_CTX_get_cert_store(ctx);
		X509_LOOKUP *lu = X509_STORE_add_lookup(store, X509_LOOKUP_file());
		if (!lu || X509_load_crl_file(lu, o->crl, X509_FILETYPE_PEM) <= 0) {
			snprintf(err, errlen, "tls: cannot load CRL %s: %s", o->crl,
				tls_errors(why, sizeof(why)));
			goto fail;
		}
		X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL);
	}
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

SSL_CTX *
tls_ctx_server(const struct tls_opts *o, char *err, size_t errlen)
{
	SSL_CTX *ctx = tls_ctx_common(TLS_server_method(), o, err, errlen);
	if (!ctx)
		return NULL;
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	/* Sessions are long-lived; resumption buys nothing and tickets add state. */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_num_tickets(ctx, 0);
	return ctx;
}

SSL_CTX *
tls_ctx_client(const struct tls_opts *o, char *err, size_t errlen)
{
	SSL_CTX *ctx = tls_ctx_common(TLS_client_method(), o, err, errlen);
	if (!ctx)
		return NULL;
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	return ctx;
}

int
tls_client_expect(SSL *ssl, const char *name)
{
	X509_VERIFY_PARAM *vp = SSL_get0_param(ssl);
	/* An address literal is matched against IP SANs, anything else as a DNS name. */
	if (X509_VERIFY_PARAM_set1_ip_asc(vp, name) == 1)
		return 0;
	if (SSL_set_tlsext_host_name(ssl, name) != 1)
		return -1;
	return SSL_set1_host(ssl, name) == 1 ? 0 : -1;
}

/*
 * The identity is the subject's one CN. A subject with two CNs (CN=sensor1/CN=evil2, or a
 * multi-valued RDN CN=sensor1+CN=evil2) names two identities, and software that reads
 * the last one would disagree with software that reads the first: refuse it instead of
 * picking one. Only a plain byte string is taken as is (UTF8String, PrintableString,
 * IA5String): a BMPString or UniversalString would have to be converted, and any byte
 * outside printable ASCII is refused here so that no caller ever sees it.
 */
static int
tls_x509_cn(X509 *peer, char *out, size_t outlen)
{
	X509_NAME *subj = X509_get_subject_name(peer);
	int idx = X509_NAME_get_index_by_NID(subj, NID_commonName, -1);
	if (idx < 0)
		return TLS_ID_NO_CN;
	if (X509_NAME_get_index_by_NID(subj, NID_commonName, idx) >= 0)
		return TLS_ID_MANY_CN;
	ASN1_STRING *d = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, idx));
	int type = ASN1_STRING_type(d);
	if (type != V_ASN1_UTF8STRING && type != V_ASN1_PRINTABLESTRING && type != V_ASN1_IA5STRING)
		return TLS_ID_BAD_CN;
	const unsigned char *s = ASN1_STRING_get0_data(d);
	int len = ASN1_STRING_length(d);
	if (len <= 0 || (size_t)len >= outlen)
		return TLS_ID_BAD_CN;
	for (int i = 0; i < len; i++)
		if (s[i] < 0x20 || s[i] > 0x7e) /* NUL, controls, DEL, non-ASCII */
			return TLS_ID_BAD_CN;
	memcpy(out, s, (size_t)len);
	out[len] = '\0';
	return 0;
}

const char *
tls_identity_strerror(int rc)
{
	switch (rc) {
	case TLS_ID_NO_CERT:
		return "no client certificate";
	case TLS_ID_NO_CN:
		return "certificate subject has no CN";
	case TLS_ID_MANY_CN:
		return "certificate subject has more than one CN (ambiguous identity)";
	case TLS_ID_BAD_CN:
		return "certificate CN is empty, too long, not a text string, or has bytes outside printable "
		       "ASCII";
	default:
		return "certificate unreadable";
	}
}

int
tls_peer_identity(SSL *ssl, char *out, size_t outlen)
{
	X509 *peer = SSL_get1_peer_certificate(ssl);
	if (!peer)
		return TLS_ID_NO_CERT;
	int rc = tls_x509_cn(peer, out, outlen);
	X509_free(peer);
	return rc;
}

int
tls_cert_identity(const char *path, char *out, size_t outlen)
{
	BIO *b = tls_bio(path);
	if (!b)
		return TLS_ID_UNREADABLE;
	X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
	BIO_free(b);
	if (!x)
		return TLS_ID_UNREADABLE;
	int rc = tls_x509_cn(x, out, outlen);
	X509_free(x);
	return rc;
}
