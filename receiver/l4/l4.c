/* SPDX-License-Identifier: BSD-2-Clause */
/* L4 connections and TCP reassembly: see l4.h for the policy. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "shared/hash.h"
#include "receiver/l4/l4.h"

/* domain (4), family, protocol, then the smaller and the larger endpoint (16 + 2 each) */
#define KEY_MAX 42

/* An out-of-order piece of one direction: never overlaps its neighbours. */
struct seg {
	struct seg *next;
	uint32_t seq;
	uint32_t len;
	uint8_t data[];
};

struct half {
	bool started; /* next is valid */
	bool fin;     /* fin_seq is valid */
	bool isn_set; /* isn is valid: the first sequence number this side sent */
	uint32_t isn;
	uint32_t next; /* next stream byte expected */
	uint32_t fin_seq;
	struct seg *segs; /* sorted by sequence number, relative to next */
	size_t buffered;
};

/* Idle-timeout classes; each domain keeps one list per class, least recent first. */
enum {
	CLS_CLOSED,
	CLS_SHORT,
	CLS_TCP,
	NCLS
};

struct conn {
	struct l4_conn_info info;
	struct half half[2];
	struct conn *prev, *next; /* in its domain's list of its class */
	uint64_t hash;
	uint64_t syn_ns; /* the client's SYN, for the handshake RTT */
	bool synack;     /* a SYN+ACK was seen */
	bool saw_fin_rst;
	uint8_t cls;
	uint8_t key[KEY_MAX];
};

struct list {
	struct conn *head, *tail;
};

struct domain {
	uint64_t clock; /* newest packet time seen */
	struct list lists[NCLS];
};

/* An IP datagram being reassembled; seen has one bit per 8-byte block. */
#define FRAG_MAX_LEN 65535
struct frag {
	uint32_t domain;
	uint8_t family;
	uint8_t src[16], dst[16];
	uint32_t id;
	uint8_t proto;
	uint64_t first_ns;
	size_t total; /* 0 until the last fragment arrived */
	size_t cap;   /* bytes allocated in data */
	uint64_t nfrags;
	uint8_t seen[(FRAG_MAX_LEN + 1) / 8 / 8];
	uint8_t *data;
};

/* Open addressing, linear probing, backward-shift deletion; c NULL: empty slot. */
struct hent {
	uint64_t hash;
	struct conn *c;
};
struct htab {
	struct hent *e;
	size_t cap, n;
};

struct l4 {
	struct l4_limits lim;
	struct l4_callbacks cb;
	struct l4_stats st;
	uint64_t timeout[NCLS];
	uint64_t next_id, proto_count[2]; /* TCP, UDP */
	struct htab tab;
	struct domain *doms;
	size_t ndoms;
	struct conn *cur; /* the last packet's connection */
	struct frag *frags;
	size_t nfrags, capfrags, frag_bytes;
};

static uint64_t
hash_bytes(const uint8_t *k, size_t n)
{
	return hash_end(hash_add(HASH_INIT, k, n));
}

static struct hent *
htab_find(const struct htab *t, uint64_t hash, const uint8_t *key)
{
	size_t i;

	if (t->cap == 0)
		return NULL;
	for (i = (size_t)hash & (t->cap - 1); t->e[i].c != NULL; i = (i + 1) & (t->cap - 1))
		if (t->e[i].hash == hash && memcmp(t->e[i].c->key, key, KEY_MAX) == 0)
			return &t->e[i];
	return NULL;
}

static void
htab_put(struct htab *t, uint64_t hash, struct conn *c)
{
	size_t i = (size_t)hash & (t->cap - 1);

	while (t->e[i].c != NULL)
		i = (i + 1) & (t->cap - 1);
	t->e[i].hash = hash;
	t->e[i].c = c;
	t->n++;
}

static int
htab_reserve(struct htab *t)
{
	struct htab n;

	if ((t->n + 1) * 2 <= t->cap)
		return 0;
	n.cap = t->cap ? t->cap * 2 : 1024;
	n.n = 0;
	if ((n.e = calloc(n.cap, sizeof(*n.e))) == NULL)
		return -ENOMEM;
	for (size_t i = 0; i < t->cap; i++)
		if (t->e[i].c != NULL)
			htab_put(&n, t->e[i].hash, t->e[i].c);
	free(t->e);
	*t = n;
	return 0;
}

/* Knuth's algorithm R (TAOCP 6.4): shifts later entries of the probe run back. */
static void
htab_del(struct htab *t, struct hent *e)
{
	size_t i = (size_t)(e - t->e), j = i, k;

	t->e[i].c = NULL;
	t->n--;
	for (;;) {
		j = (j + 1) & (t->cap - 1);
		if (t->e[j].c == NULL)
			return;
		k = (size_t)t->e[j].hash & (t->cap - 1);
		/* Entry j may move to i unless its home k lies cyclically in (i, j]. */
		if (i <= j ? (i < k && k <= j) : (i < k || k <= j))
			continue;
		t->e[i] = t->e[j];
		t->e[j].c = NULL;
		i = j;
	}
}

static void
list_del(struct list *ls, struct conn *c)
{
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		ls->head = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	else
		ls->tail = c->prev;
	c->prev = c->next = NULL;
}

static void
list_add(struct list *ls, struct conn *c)
{
	c->prev = ls->tail;
	c->next = NULL;
	if (ls->tail != NULL)
		ls->tail->next = c;
	else
		ls->head = c;
	ls->tail = c;
}

/* Sequence-number arithmetic modulo 2^32 (RFC 9293, section 3.4): the signed distance
 * from b to a. */
static int64_t
seq_diff(uint32_t a, uint32_t b)
{
	return (int64_t)(int32_t)(a - b);
}

struct l4 *
l4_new(const struct l4_limits *lim, const struct l4_callbacks *cb)
{
	struct l4 *l = calloc(1, sizeof(*l));

	if (l == NULL)
		return NULL;
	if (lim != NULL)
		l->lim = *lim;
	if (l->lim.max_conns == 0)
		l->lim.max_conns = L4_DEFAULT_MAX_CONNS;
	if (l->lim.max_conn_buf == 0)
		l->lim.max_conn_buf = L4_DEFAULT_MAX_CONN_BUF;
	if (l->lim.max_buf == 0)
		l->lim.max_buf = L4_DEFAULT_MAX_BUF;
	if (l->lim.max_frag_datagrams == 0)
		l->lim.max_frag_datagrams = L4_DEFAULT_MAX_FRAG_DATAGRAMS;
	if (l->lim.max_frag_bytes == 0)
		l->lim.max_frag_bytes = L4_DEFAULT_MAX_FRAG_BYTES;
	if (l->lim.frag_timeout_ns == 0)
		l->lim.frag_timeout_ns = L4_DEFAULT_FRAG_TIMEOUT_NS;
	if (l->lim.timeout_closed_ns == 0)
		l->lim.timeout_closed_ns = L4_DEFAULT_TIMEOUT_CLOSED_NS;
	if (l->lim.timeout_short_ns == 0)
		l->lim.timeout_short_ns = L4_DEFAULT_TIMEOUT_SHORT_NS;
	if (l->lim.timeout_tcp_ns == 0)
		l->lim.timeout_tcp_ns = L4_DEFAULT_TIMEOUT_TCP_NS;
	l->timeout[CLS_CLOSED] = l->lim.timeout_closed_ns;
	l->timeout[CLS_SHORT] = l->lim.timeout_short_ns;
	l->timeout[CLS_TCP] = l->lim.timeout_tcp_ns;
	if (cb != NULL)
		l->cb = *cb;
	return l;
}

static void
half_clear(struct l4 *l, struct half *h)
{
	struct seg *s, *n;

	for (s = h->segs; s != NULL; s = n) {
		n = s->next;
		free(s);
	}
	l->st.buffered -= h->buffered;
	h->segs = NULL;
	h->buffered = 0;
}

/* Forgets datagram i (its fragments counted as dropped unless it was reassembled). */
static void
frag_remove(struct l4 *l, size_t i, bool dropped)
{
	struct frag *f = &l->frags[i];

	if (dropped)
		l->st.frag_dropped += f->nfrags;
	l->frag_bytes -= f->cap;
	free(f->data);
	l->frags[i] = l->frags[--l->nfrags];
}

static void
deliver(struct l4 *l, struct conn *c, int dir, const uint8_t *p, size_t n)
{
	c->info.side[dir].delivered += n;
	if (l->cb.on_data != NULL && n > 0)
		l->cb.on_data(l->cb.arg, &c->info, dir, p, n);
}

static void
gap(struct l4 *l, struct conn *c, int dir, uint64_t n)
{
	c->info.side[dir].gap_bytes += n;
	l->st.gap_bytes += n;
	if (l->cb.on_gap != NULL && n > 0)
		l->cb.on_gap(l->cb.arg, &c->info, dir, n);
}

/* Delivers the buffered pieces that start at or before h->next. */
static void
drain(struct l4 *l, struct conn *c, int dir)
{
	struct half *h = &c->half[dir];
	struct seg *s;

	while ((s = h->segs) != NULL && seq_diff(s->seq, h->next) <= 0) {
		int64_t skip = -seq_diff(s->seq, h->next);

		if (skip < s->len) {
			deliver(l, c, dir, s->data + skip, s->len - (size_t)skip);
			h->next = s->seq + s->len;
		}
		h->segs = s->next;
		h->buffered -= s->len;
		l->st.buffered -= s->len;
		free(s);
	}
}

/* Skips the hole before the first buffered piece and delivers what follows it. */
static void
skip_hole(struct l4 *l, struct conn *c, int dir)
{
	struct half *h = &c->half[dir];

	if (h->segs == NULL)
		return;
	gap(l, c, dir, (uint64_t)seq_diff(h->segs->seq, h->next));
	h->next = h->segs->seq;
	drain(l, c, dir);
}

static int
seg_add(struct l4 *l, struct half *h, struct seg **at, uint32_t seq, const uint8_t *p, size_t n)
{
	struct seg *s = malloc(sizeof(*s) + n);

	if (s == NULL)
		return -ENOMEM;
	s->seq = seq;
	s->len = (uint32_t)n;
	memcpy(s->data, p, n);
	s->next = *at;
	*at = s;
	h->buffered += n;
	l->st.buffered += n;
	return 0;
}

/*
 * Buffers the bytes of [seq, seq + n) that no buffered piece holds yet (first copy
 * wins), comparing the overlapped bytes. The caller has trimmed everything below next.
 */
static int
insert(struct l4 *l, struct conn *c, int dir, uint32_t seq, const uint8_t *p, size_t n)
{
	struct half *h = &c->half[dir];
	struct l4_side *sd = &c->info.side[dir];
	struct seg **at = &h->segs;
	int64_t s = seq_diff(seq, h->next), e = s + (int64_t)n, base = s;
	bool overlap = false, bad = false;
	int rc;

	for (; *at != NULL && s < e; at = &(*at)->next) {
		int64_t ss = seq_diff((*at)->seq, h->next), se = ss + (*at)->len;

		if (se <= s)
			continue;
		if (ss >= e)
			break;
		if (ss > s) {
			if ((rc = seg_add(
				     l, h, at, h->next + (uint32_t)s, p + (s - base), (size_t)(ss - s))) != 0)
				return rc;
			at = &(*at)->next;
			s = ss;
		}
		/* [s, min(e, se)) is held by *at already. */
		overlap = true;
		int64_t oe = e < se ? e : se;
		if (memcmp(p + (s - base), (*at)->data + (s - ss), (size_t)(oe - s)) != 0)
			bad = true;
		s = oe;
	}
	if (s < e && (rc = seg_add(l, h, at, h->next + (uint32_t)s, p + (s - base), (size_t)(e - s))) != 0)
		return rc;
	sd->overlaps += overlap;
	sd->bad_overlaps += bad;
	return 0;
}

static void
half_end(struct l4 *l, struct conn *c, int dir)
{
	struct half *h = &c->half[dir];

	while (h->segs != NULL)
		skip_hole(l, c, dir);
	if (h->fin && seq_diff(h->fin_seq, h->next) > 0) {
		gap(l, c, dir, (uint64_t)seq_diff(h->fin_seq, h->next));
		h->next = h->fin_seq;
	}
}

/* The handshake RTT is Wireshark's tcp.analysis.initial_rtt: from the client's first SYN
 * to its first ACK after a SYN+ACK. */
static int
tcp_segment(struct l4 *l, struct conn *c, int dir, uint64_t ts_ns, const struct pkt *p)
{
	struct half *h = &c->half[dir];
	struct l4_side *sd = &c->info.side[dir];
	uint32_t seq = p->tcp_seq;
	const uint8_t *data = p->payload;
	size_t n = p->payload_len;
	uint8_t fl = p->tcp_flags;
	int64_t off;
	int rc;

	if (!h->isn_set) {
		h->isn_set = true;
		h->isn = seq;
	}
	if (fl & PKT_TCP_RST) {
		sd->resets++;
		c->saw_fin_rst = true;
		c->info.state = L4_ST_RESET;
		return 0; /* RFC 9293 3.10.7.4: an RST's payload is diagnostic text, not stream */
	}
	if (!(fl & (PKT_TCP_SYN | PKT_TCP_FIN)) && p->tcp_win == 0)
		sd->zero_windows++;
	if (fl & PKT_TCP_SYN) {
		if (!h->started) {
			h->started = true;
			h->next = seq + 1;
		}
		if (fl & PKT_TCP_ACK) {
			c->synack = true;
			if (c->info.state == L4_ST_SYN_SENT)
				c->info.state = L4_ST_ESTABLISHED;
		} else if (dir == L4_CLIENT && c->syn_ns == 0) {
			c->syn_ns = ts_ns;
		}
		seq++;
	} else {
		if (!h->started) {
			h->started = true;
			h->next = seq; /* mid-stream pick-up */
		}
		if (dir == L4_CLIENT && (fl & PKT_TCP_ACK) && c->synack && c->syn_ns != 0 &&
			c->info.rtt_ns == 0)
			c->info.rtt_ns = ts_ns > c->syn_ns ? ts_ns - c->syn_ns : 1;
	}
	if (fl & PKT_TCP_FIN) {
		h->fin = true;
		h->fin_seq = seq + (uint32_t)n;
		c->saw_fin_rst = true;
		if (c->info.state != L4_ST_RESET)
			c->info.state = c->half[!dir].fin ? L4_ST_CLOSED : L4_ST_CLOSING;
	}
	if (n == 0)
		return 0;
	off = seq_diff(seq, h->next);
	if (off + (int64_t)n <= 0) {
		sd->retrans++;
		return 0;
	}
	if (off < 0) {
		sd->overlaps++;
		data += -off;
		n -= (size_t)-off;
		seq = h->next;
	} else if (off > 0) {
		sd->out_of_order++;
	}
	if ((rc = insert(l, c, dir, seq, data, n)) != 0)
		return rc;
	drain(l, c, dir);
	while (h->buffered > l->lim.max_conn_buf || (l->st.buffered > l->lim.max_buf && h->segs != NULL)) {
		l->st.buf_flushes++;
		skip_hole(l, c, dir);
	}
	return 0;
}

/* The key of a packet's 5-tuple in its domain, smaller endpoint first; *swapped when
 * the source is the larger one. */
static void
make_key(uint32_t domain, const struct pkt *p, uint8_t *key, bool *swapped)
{
	size_t al = p->family == 4 ? 4 : 16;
	uint8_t a[18] = { 0 }, b[18] = { 0 };

	memcpy(a, p->src, al);
	a[16] = (uint8_t)(p->sport >> 8);
	a[17] = (uint8_t)p->sport;
	memcpy(b, p->dst, al);
	b[16] = (uint8_t)(p->dport >> 8);
	b[17] = (uint8_t)p->dport;
	*swapped = memcmp(a, b, sizeof(a)) > 0;
	memcpy(key, &domain, 4);
	key[4] = p->family;
	key[5] = p->proto;
	memcpy(key + 6, *swapped ? b : a, 18);
	memcpy(key + 24, *swapped ? a : b, 18);
}

static uint64_t
flow_hash(uint32_t domain, const struct l4_conn_info *ci)
{
	uint8_t k[37];
	size_t al = ci->family == 4 ? 4 : 16;
	int lo = memcmp(ci->ep[0].addr, ci->ep[1].addr, al) > 0;

	memset(k, 0, sizeof(k));
	memcpy(k, &domain, 4);
	k[4] = ci->family;
	memcpy(k + 5, ci->ep[lo].addr, al);
	memcpy(k + 21, ci->ep[!lo].addr, al);
	return hash_bytes(k, sizeof(k)) & INT64_MAX;
}

static uint8_t
conn_class(const struct conn *c)
{
	if (c->info.state == L4_ST_CLOSED || c->info.state == L4_ST_RESET)
		return CLS_CLOSED;
	if (c->info.proto == 17 || c->info.state == L4_ST_SYN_SENT)
		return CLS_SHORT;
	return CLS_TCP;
}

static void
end_conn(struct l4 *l, struct conn *c, enum l4_end why)
{
	struct hent *e = htab_find(&l->tab, c->hash, c->key);

	half_end(l, c, L4_CLIENT);
	half_end(l, c, L4_SERVER);
	if (l->cb.on_end != NULL)
		l->cb.on_end(l->cb.arg, &c->info, why);
	list_del(&l->doms[c->info.domain].lists[c->cls], c);
	if (e != NULL)
		htab_del(&l->tab, e);
	half_clear(l, &c->half[0]);
	half_clear(l, &c->half[1]);
	if (l->cur == c)
		l->cur = NULL;
	free(c);
	l->st.live--;
	l->st.ended_idle += why == L4_END_IDLE;
	l->st.evicted += why == L4_END_EVICTED;
	l->st.reused += why == L4_END_REUSED;
}

static void
expire(struct l4 *l, struct domain *d)
{
	for (int k = 0; k < NCLS; k++) {
		struct conn *c;

		if (l->timeout[k] == UINT64_MAX)
			continue;
		while ((c = d->lists[k].head) != NULL && d->clock > c->info.last_ns &&
			d->clock - c->info.last_ns > l->timeout[k])
			end_conn(l, c, L4_END_IDLE);
	}
}

/* Makes room for one connection: the least recently active of the domain, closed ones
 * first, then half-open and UDP, then established; else of any domain. */
static void
evict_one(struct l4 *l, uint32_t domain)
{
	for (int k = 0; k < NCLS; k++)
		if (l->doms[domain].lists[k].head != NULL) {
			end_conn(l, l->doms[domain].lists[k].head, L4_END_EVICTED);
			return;
		}
	for (int k = 0; k < NCLS; k++)
		for (size_t d = 0; d < l->ndoms; d++)
			if (l->doms[d].lists[k].head != NULL) {
				end_conn(l, l->doms[d].lists[k].head, L4_END_EVICTED);
				return;
			}
}

static int
conn_new(struct l4 *l, uint32_t domain, const struct pkt *p, uint64_t ts_ns, const uint8_t *key,
	uint64_t hash, struct conn **out)
{
	struct l4_conn_info *ci;
	struct conn *c;
	size_t al = p->family == 4 ? 4 : 16;
	int client_is_dst;

	while (l->st.live >= l->lim.max_conns && l->st.live > 0)
		evict_one(l, domain);
	if (htab_reserve(&l->tab) != 0 || (c = calloc(1, sizeof(*c))) == NULL)
		return -ENOMEM;
	ci = &c->info;
	ci->conn_id = l->next_id++;
	ci->proto_index = l->proto_count[p->proto == 17]++;
	ci->domain = domain;
	ci->family = p->family;
	ci->proto = p->proto;
	ci->first_ns = ts_ns;
	ci->midstream = p->proto == 6 && !(p->tcp_flags & PKT_TCP_SYN);
	/* The receiver of a lone SYN+ACK is the client. */
	client_is_dst = p->proto == 6 &&
		(p->tcp_flags & (PKT_TCP_SYN | PKT_TCP_ACK)) == (PKT_TCP_SYN | PKT_TCP_ACK);
	memcpy(ci->ep[client_is_dst].addr, p->src, al);
	ci->ep[client_is_dst].port = p->sport;
	memcpy(ci->ep[!client_is_dst].addr, p->dst, al);
	ci->ep[!client_is_dst].port = p->dport;
	ci->state = p->proto == 6 && (p->tcp_flags & (PKT_TCP_SYN | PKT_TCP_ACK)) == PKT_TCP_SYN
		? L4_ST_SYN_SENT
		: L4_ST_ESTABLISHED;
	ci->flow_id = flow_hash(domain, ci);
	memcpy(c->key, key, KEY_MAX);
	c->hash = hash;
	c->cls = conn_class(c);
	htab_put(&l->tab, hash, c);
	list_add(&l->doms[domain].lists[c->cls], c);
	l->st.conns++;
	l->st.live++;
	*out = c;
	return 0;
}

static int
domain_get(struct l4 *l, uint32_t domain)
{
	if (domain >= L4_MAX_DOMAINS)
		return -EINVAL;
	if (domain >= l->ndoms) {
		struct domain *v = realloc(l->doms, (domain + 1) * sizeof(*v));

		if (v == NULL)
			return -ENOMEM;
		memset(v + l->ndoms, 0, (domain + 1 - l->ndoms) * sizeof(*v));
		l->doms = v;
		l->ndoms = domain + 1;
	}
	return 0;
}

int
l4_packet(struct l4 *l, uint32_t domain, uint64_t ts_ns, const struct pkt *p, size_t origlen)
{
	uint8_t key[KEY_MAX];
	struct hent *e;
	struct conn *c = NULL;
	struct domain *d;
	bool swapped;
	uint64_t hash;
	size_t al = p->family == 4 ? 4 : 16;
	uint8_t cls;
	int dir, rc;

	l->cur = NULL;
	if ((rc = domain_get(l, domain)) != 0)
		return rc;
	d = &l->doms[domain];
	if (ts_ns > d->clock) {
		d->clock = ts_ns;
		expire(l, d);
	}
	make_key(domain, p, key, &swapped);
	hash = hash_bytes(key, KEY_MAX);
	if ((e = htab_find(&l->tab, hash, key)) != NULL) {
		c = e->c;
		/* A new SYN on a used 5-tuple (see l4.h). */
		if (p->proto == 6 && (p->tcp_flags & (PKT_TCP_SYN | PKT_TCP_ACK)) == PKT_TCP_SYN) {
			dir = memcmp(c->info.ep[L4_CLIENT].addr, p->src, al) == 0 &&
					c->info.ep[L4_CLIENT].port == p->sport
				? L4_CLIENT
				: L4_SERVER;
			if (c->saw_fin_rst || (c->half[dir].isn_set && c->half[dir].isn != p->tcp_seq)) {
				end_conn(l, c, L4_END_REUSED);
				c = NULL;
			}
		}
	}
	if (c == NULL && (rc = conn_new(l, domain, p, ts_ns, key, hash, &c)) != 0)
		return rc;
	dir = memcmp(c->info.ep[L4_CLIENT].addr, p->src, al) == 0 && c->info.ep[L4_CLIENT].port == p->sport
		? L4_CLIENT
		: L4_SERVER;
	c->info.side[dir].pkts++;
	c->info.side[dir].bytes += origlen;
	c->info.last_ns = ts_ns;
	l->cur = c;
	if (p->proto == 17)
		deliver(l, c, dir, p->payload, p->payload_len);
	else if ((rc = tcp_segment(l, c, dir, ts_ns, p)) != 0)
		return rc;
	/* Most recently active last, in the list of its (maybe new) class. */
	cls = conn_class(c);
	list_del(&d->lists[c->cls], c);
	c->cls = cls;
	list_add(&d->lists[cls], c);
	return 0;
}

static bool
frag_complete(const struct frag *f)
{
	size_t blocks = (f->total + 7) / 8;

	if (f->total == 0)
		return false;
	for (size_t b = 0; b < blocks; b++)
		if (!(f->seen[b / 8] & (1u << (b % 8))))
			return false;
	return true;
}

/* RFC 791, section 3.2 (reassembly; RFC 8200, section 4.5 for IPv6), with RFC 815's observation that holes can be kept
 * as a bitmap of 8-byte blocks: fragment offsets count in those. */
static int
fragment(struct l4 *l, uint32_t domain, uint64_t ts_ns, const struct pkt *pk, size_t origlen)
{
	size_t off = pk->frag_off, n = pk->payload_len, end = off + n, al = pk->family == 4 ? 4 : 16, i;
	struct frag *f = NULL;
	struct pkt out;
	int rc = 0;

	for (i = l->nfrags; i-- > 0;)
		if (ts_ns - l->frags[i].first_ns > l->lim.frag_timeout_ns && ts_ns > l->frags[i].first_ns)
			frag_remove(l, i, true);
	/* A cut fragment cannot be placed; all but the last must fill whole blocks. */
	if (pk->cut || end > FRAG_MAX_LEN || (pk->frag_more && (n == 0 || n % 8 != 0))) {
		l->st.frag_dropped++;
		return 0;
	}
	for (i = 0; i < l->nfrags && f == NULL; i++)
		if (l->frags[i].id == pk->frag_id && l->frags[i].proto == pk->proto &&
			l->frags[i].domain == domain && l->frags[i].family == pk->family &&
			memcmp(l->frags[i].src, pk->src, al) == 0 &&
			memcmp(l->frags[i].dst, pk->dst, al) == 0)
			f = &l->frags[i];
	if (f == NULL) {
		if (l->nfrags >= l->lim.max_frag_datagrams) {
			l->st.frag_dropped++;
			return 0;
		}
		if (l->nfrags == l->capfrags) {
			size_t cap = l->capfrags ? l->capfrags * 2 : 16;
			struct frag *v = realloc(l->frags, cap * sizeof(*v));

			if (v == NULL)
				return -ENOMEM;
			l->frags = v;
			l->capfrags = cap;
		}
		f = &l->frags[l->nfrags++];
		memset(f, 0, sizeof(*f));
		f->domain = domain;
		f->family = pk->family;
		memcpy(f->src, pk->src, al);
		memcpy(f->dst, pk->dst, al);
		f->id = pk->frag_id;
		f->proto = pk->proto;
		f->first_ns = ts_ns;
	}
	i = (size_t)(f - l->frags);
	f->nfrags++;
	/* A second, different end, or bytes past the end: the datagram is broken. */
	if ((!pk->frag_more && f->total != 0 && f->total != end) || (f->total != 0 && end > f->total)) {
		frag_remove(l, i, true);
		return 0;
	}
	if (!pk->frag_more)
		f->total = end;
	if (end > f->cap) {
		uint8_t *d;

		if (l->frag_bytes + (end - f->cap) > l->lim.max_frag_bytes) {
			frag_remove(l, i, true);
			return 0;
		}
		if ((d = realloc(f->data, end)) == NULL) {
			frag_remove(l, i, true);
			return -ENOMEM;
		}
		l->frag_bytes += end - f->cap;
		f->data = d;
		f->cap = end;
	}
	/* First copy wins, block by block. */
	for (size_t b = off / 8; b * 8 < end; b++) {
		size_t from = b * 8, to = from + 8 < end ? from + 8 : end;

		if (f->seen[b / 8] & (1u << (b % 8))) {
			l->st.frag_bad_overlaps += memcmp(f->data + from, pk->payload + (from - off),
							   to - from) != 0;
			continue;
		}
		f->seen[b / 8] |= (uint8_t)(1u << (b % 8));
		memcpy(f->data + from, pk->payload + (from - off), to - from);
	}
	if (!frag_complete(f))
		return 0;
	out = *pk;
	out.cut = false;
	out.frag_id = 0;
	out.frag_off = 0;
	out.frag_more = false;
	l->st.frag_reassembled++;
	if (pkt_decode_l4(f->proto, f->data, f->total, &out) == PKT_OK)
		rc = l4_packet(l, domain, ts_ns, &out, origlen);
	else
		l->st.decode_errs++;
	frag_remove(l, (size_t)(f - l->frags), false);
	return rc;
}

int
l4_frame(struct l4 *l, uint32_t domain, uint64_t ts_ns, uint32_t linktype, const uint8_t *p, size_t len,
	size_t origlen)
{
	struct pkt pk;
	int rc;

	l->cur = NULL;
	if (domain >= L4_MAX_DOMAINS)
		return -EINVAL;
	l->st.pkts++;
	rc = pkt_decode(linktype, p, len, &pk);
	if (rc == PKT_EFRAG) {
		l->st.frag_pkts++;
		return fragment(l, domain, ts_ns, &pk, origlen);
	}
	if (rc != PKT_OK) {
		l->st.decode_errs++;
		return rc;
	}
	return l4_packet(l, domain, ts_ns, &pk, origlen);
}

struct l4_conn_info *
l4_frame_conn(struct l4 *l)
{
	return l->cur != NULL ? &l->cur->info : NULL;
}

void
l4_finish(struct l4 *l)
{
	while (l->nfrags > 0)
		frag_remove(l, l->nfrags - 1, true);
	for (size_t d = 0; d < l->ndoms; d++)
		for (int k = 0; k < NCLS; k++)
			while (l->doms[d].lists[k].head != NULL)
				end_conn(l, l->doms[d].lists[k].head, L4_END_FINISH);
}

void
l4_free(struct l4 *l)
{
	if (l == NULL)
		return;
	while (l->nfrags > 0)
		frag_remove(l, l->nfrags - 1, true);
	free(l->frags);
	for (size_t d = 0; d < l->ndoms; d++)
		for (int k = 0; k < NCLS; k++) {
			struct conn *c, *n;

			for (c = l->doms[d].lists[k].head; c != NULL; c = n) {
				n = c->next;
				half_clear(l, &c->half[0]);
				half_clear(l, &c->half[1]);
				free(c);
			}
		}
	free(l->doms);
	free(l->tab.e);
	free(l);
}

void
l4_each(const struct l4 *l, void (*fn)(void *arg, const struct l4_conn_info *conn), void *arg)
{
	for (size_t d = 0; d < l->ndoms; d++)
		for (int k = 0; k < NCLS; k++)
			for (const struct conn *c = l->doms[d].lists[k].head; c != NULL; c = c->next)
				fn(arg, &c->info);
}

const struct l4_stats *
l4_stats(const struct l4 *l)
{
	return &l->st;
}

const char *
l4_state_name(enum l4_state s)
{
	switch (s) {
	case L4_ST_SYN_SENT:
		return "SYN_SENT";
	case L4_ST_ESTABLISHED:
		return "ESTABLISHED";
	case L4_ST_CLOSING:
		return "CLOSING";
	case L4_ST_CLOSED:
		return "CLOSED";
	case L4_ST_RESET:
		return "RESET";
	}
	return "?";
}

const char *
l4_end_name(enum l4_end why)
{
	switch (why) {
	case L4_END_FINISH:
		return "end of input";
	case L4_END_IDLE:
		return "idle timeout";
	case L4_END_EVICTED:
		return "evicted";
	case L4_END_REUSED:
		return "port reuse";
	}
	return "?";
}
