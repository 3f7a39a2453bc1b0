/* SPDX-License-Identifier: BSD-2-Clause */
/* L4 connections and TCP reassembly: see l4.h for the policy. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "l4.h"

#define KEY_MAX 38

/* An out-of-order piece of one direction: never overlaps its neighbours. */
struct seg {
	struct seg *next;
	uint32_t seq;
	uint32_t len;
	uint8_t data[];
};

struct half {
	bool started;   /* next is valid */
	bool fin;       /* fin_seq is valid */
	uint32_t next;  /* next stream byte expected */
	uint32_t fin_seq;
	struct seg *segs; /* sorted by sequence number, relative to next */
	size_t buffered;
};

struct conn {
	struct l4_conn_info info;
	struct half half[2];
};

/* An IPv4 datagram being reassembled; seen has one bit per 8-byte block. */
#define FRAG_MAX_LEN 65535
struct frag {
	uint8_t src[4], dst[4];
	uint16_t id;
	uint8_t proto;
	uint64_t first_ns;
	size_t total; /* 0 until the last fragment arrived */
	size_t cap;   /* bytes allocated in data */
	uint64_t nfrags;
	uint8_t seen[(FRAG_MAX_LEN + 1) / 8 / 8];
	uint8_t *data;
};

/* Open addressing, linear probing; val is an index + 1 (0: empty slot). */
struct hent {
	uint8_t key[KEY_MAX];
	uint32_t val;
};
struct htab {
	struct hent *e;
	size_t cap, n;
};

struct l4 {
	struct l4_limits lim;
	struct l4_callbacks cb;
	struct l4_stats st;
	struct conn *conns;
	size_t nconns, capconns;
	uint64_t nflows, proto_count[2]; /* TCP, UDP */
	struct htab conn_tab, flow_tab;
	struct frag *frags;
	size_t nfrags, capfrags, frag_bytes;
};

static uint64_t hash_key(const uint8_t *k)
{
	uint64_t h = 1469598103934665603ull; /* FNV-1a */

	for (size_t i = 0; i < KEY_MAX; i++)
		h = (h ^ k[i]) * 1099511628211ull;
	return h;
}

/* Returns the slot holding key, or the empty slot where it would go. */
static struct hent *htab_slot(struct htab *t, const uint8_t *key)
{
	size_t i = (size_t)hash_key(key) & (t->cap - 1);

	while (t->e[i].val != 0 && memcmp(t->e[i].key, key, KEY_MAX) != 0)
		i = (i + 1) & (t->cap - 1);
	return &t->e[i];
}

static int htab_grow(struct htab *t)
{
	struct htab n = {.cap = t->cap ? t->cap * 2 : 1024};

	if ((n.e = calloc(n.cap, sizeof(*n.e))) == NULL)
		return -ENOMEM;
	for (size_t i = 0; i < t->cap; i++)
		if (t->e[i].val != 0)
			*htab_slot(&n, t->e[i].key) = t->e[i];
	n.n = t->n;
	free(t->e);
	*t = n;
	return 0;
}

/* Finds key; when absent and val != 0, inserts it. Returns the value (0: absent). */
static int htab_get(struct htab *t, const uint8_t *key, uint32_t val, uint32_t *out)
{
	struct hent *s;

	if ((t->n + 1) * 2 > t->cap && htab_grow(t) != 0)
		return -ENOMEM;
	s = htab_slot(t, key);
	if (s->val == 0 && val != 0) {
		memcpy(s->key, key, KEY_MAX);
		s->val = val;
		t->n++;
	}
	*out = s->val;
	return 0;
}

/* Sequence-number arithmetic modulo 2^32 (RFC 9293, section 3.4): the signed distance
 * from b to a. */
static int64_t seq_diff(uint32_t a, uint32_t b)
{
	return (int64_t)(int32_t)(a - b);
}

struct l4 *l4_new(const struct l4_limits *lim, const struct l4_callbacks *cb)
{
	struct l4 *l = calloc(1, sizeof(*l));

	if (l == NULL)
		return NULL;
	if (lim != NULL)
		l->lim = *lim;
	if (l->lim.max_conns == 0)
		l->lim.max_conns = L4_DEFAULT_MAX_CONNS;
	if (l->lim.max_conns > UINT32_MAX - 1)
		l->lim.max_conns = UINT32_MAX - 1;
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
	if (cb != NULL)
		l->cb = *cb;
	return l;
}

static void half_clear(struct l4 *l, struct half *h)
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
static void frag_remove(struct l4 *l, size_t i, bool dropped)
{
	struct frag *f = &l->frags[i];

	if (dropped)
		l->st.frag_dropped += f->nfrags;
	l->frag_bytes -= f->cap;
	free(f->data);
	l->frags[i] = l->frags[--l->nfrags];
}

void l4_free(struct l4 *l)
{
	if (l == NULL)
		return;
	while (l->nfrags > 0)
		frag_remove(l, l->nfrags - 1, true);
	free(l->frags);
	for (size_t i = 0; i < l->nconns; i++) {
		half_clear(l, &l->conns[i].half[0]);
		half_clear(l, &l->conns[i].half[1]);
	}
	free(l->conns);
	free(l->conn_tab.e);
	free(l->flow_tab.e);
	free(l);
}

static void deliver(struct l4 *l, struct conn *c, int dir, const uint8_t *p, size_t n)
{
	c->info.side[dir].delivered += n;
	if (l->cb.on_data != NULL && n > 0)
		l->cb.on_data(l->cb.arg, &c->info, dir, p, n);
}

static void gap(struct l4 *l, struct conn *c, int dir, uint64_t n)
{
	c->info.side[dir].gap_bytes += n;
	l->st.gap_bytes += n;
	if (l->cb.on_gap != NULL && n > 0)
		l->cb.on_gap(l->cb.arg, &c->info, dir, n);
}

/* Delivers the buffered pieces that start at or before h->next. */
static void drain(struct l4 *l, struct conn *c, int dir)
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
static void skip_hole(struct l4 *l, struct conn *c, int dir)
{
	struct half *h = &c->half[dir];

	if (h->segs == NULL)
		return;
	gap(l, c, dir, (uint64_t)seq_diff(h->segs->seq, h->next));
	h->next = h->segs->seq;
	drain(l, c, dir);
}

static int seg_add(struct l4 *l, struct half *h, struct seg **at, uint32_t seq, const uint8_t *p, size_t n)
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
static int insert(struct l4 *l, struct conn *c, int dir, uint32_t seq, const uint8_t *p, size_t n)
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
			if ((rc = seg_add(l, h, at, h->next + (uint32_t)s, p + (s - base), (size_t)(ss - s))) != 0)
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

static void half_end(struct l4 *l, struct conn *c, int dir)
{
	struct half *h = &c->half[dir];

	while (h->segs != NULL)
		skip_hole(l, c, dir);
	if (h->fin && seq_diff(h->fin_seq, h->next) > 0) {
		gap(l, c, dir, (uint64_t)seq_diff(h->fin_seq, h->next));
		h->next = h->fin_seq;
	}
}

static int tcp_segment(struct l4 *l, struct conn *c, int dir, const struct pkt *p)
{
	struct half *h = &c->half[dir];
	struct l4_side *sd = &c->info.side[dir];
	uint32_t seq = p->tcp_seq;
	const uint8_t *data = p->payload;
	size_t n = p->payload_len;
	int64_t off;
	int rc;

	if (p->tcp_flags & PKT_TCP_RST) {
		c->info.state = L4_ST_RESET;
		return 0; /* RFC 9293 3.10.7.4: an RST's payload is diagnostic text, not stream */
	}
	if (p->tcp_flags & PKT_TCP_SYN) {
		/* A repeated SYN changes nothing; a new one on a reused 5-tuple is not
		 * told apart from the old connection. */
		if (!h->started) {
			h->started = true;
			h->next = seq + 1;
		}
		if ((p->tcp_flags & PKT_TCP_ACK) && c->info.state == L4_ST_SYN_SENT)
			c->info.state = L4_ST_ESTABLISHED;
		seq++;
	} else if (!h->started) {
		h->started = true;
		h->next = seq; /* mid-stream pick-up */
	}
	if (p->tcp_flags & PKT_TCP_FIN) {
		h->fin = true;
		h->fin_seq = seq + (uint32_t)n;
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

/* Key of the 5-tuple with the smaller endpoint first; *swapped when src is the larger. */
static void make_keys(const struct pkt *p, uint8_t *ckey, uint8_t *fkey, bool *swapped)
{
	size_t al = p->family == 4 ? 4 : 16;
	uint8_t a[18] = {0}, b[18] = {0};
	int cmp;

	memcpy(a, p->src, al);
	a[16] = (uint8_t)(p->sport >> 8);
	a[17] = (uint8_t)p->sport;
	memcpy(b, p->dst, al);
	b[16] = (uint8_t)(p->dport >> 8);
	b[17] = (uint8_t)p->dport;
	cmp = memcmp(a, b, sizeof(a));
	*swapped = cmp > 0;
	memset(ckey, 0, KEY_MAX);
	ckey[0] = p->family;
	ckey[1] = p->proto;
	memcpy(ckey + 2, *swapped ? b : a, 18);
	memcpy(ckey + 20, *swapped ? a : b, 18);
	memset(fkey, 0, KEY_MAX);
	fkey[0] = p->family;
	cmp = memcmp(a, b, 16);
	memcpy(fkey + 1, cmp > 0 ? b : a, 16);
	memcpy(fkey + 17, cmp > 0 ? a : b, 16);
}

static int conn_new(struct l4 *l, const struct pkt *p, uint64_t ts_ns, const uint8_t *fkey, struct conn **out)
{
	struct l4_conn_info *ci;
	uint32_t flow;
	int client_is_dst;
	int rc;

	if (l->nconns == l->capconns) {
		size_t cap = l->capconns ? l->capconns * 2 : 256;
		struct conn *v = realloc(l->conns, cap * sizeof(*v));

		if (v == NULL)
			return -ENOMEM;
		l->conns = v;
		l->capconns = cap;
	}
	if ((rc = htab_get(&l->flow_tab, fkey, (uint32_t)l->nflows + 1, &flow)) != 0)
		return rc;
	if (flow == l->nflows + 1)
		l->nflows++;
	*out = &l->conns[l->nconns];
	memset(*out, 0, sizeof(**out));
	ci = &(*out)->info;
	ci->conn_id = l->nconns++;
	ci->proto_index = l->proto_count[p->proto == 17]++;
	ci->flow_id = flow - 1;
	ci->family = p->family;
	ci->proto = p->proto;
	ci->first_ns = ts_ns;
	/* The receiver of a lone SYN+ACK is the client. */
	client_is_dst = p->proto == 6 && (p->tcp_flags & (PKT_TCP_SYN | PKT_TCP_ACK)) == (PKT_TCP_SYN | PKT_TCP_ACK);
	memcpy(ci->ep[client_is_dst].addr, p->src, p->family == 4 ? 4 : 16);
	ci->ep[client_is_dst].port = p->sport;
	memcpy(ci->ep[!client_is_dst].addr, p->dst, p->family == 4 ? 4 : 16);
	ci->ep[!client_is_dst].port = p->dport;
	ci->state = p->proto == 6 && (p->tcp_flags & (PKT_TCP_SYN | PKT_TCP_ACK)) == PKT_TCP_SYN ?
			    L4_ST_SYN_SENT : L4_ST_ESTABLISHED;
	l->st.conns++;
	return 0;
}

int l4_packet(struct l4 *l, uint64_t ts_ns, const struct pkt *p, size_t origlen)
{
	uint8_t ckey[KEY_MAX], fkey[KEY_MAX];
	struct conn *c;
	bool swapped;
	uint32_t idx;
	size_t al = p->family == 4 ? 4 : 16;
	int dir, rc;

	make_keys(p, ckey, fkey, &swapped);
	if ((rc = htab_get(&l->conn_tab, ckey, 0, &idx)) != 0)
		return rc;
	if (idx == 0) {
		if (l->nconns >= l->lim.max_conns) {
			l->st.untracked_pkts++;
			return 0;
		}
		if ((rc = conn_new(l, p, ts_ns, fkey, &c)) != 0)
			return rc;
		if ((rc = htab_get(&l->conn_tab, ckey, (uint32_t)l->nconns, &idx)) != 0) {
			l->nconns--;
			l->st.conns--;
			l->proto_count[p->proto == 17]--;
			return rc;
		}
	}
	c = &l->conns[idx - 1];
	dir = memcmp(c->info.ep[L4_CLIENT].addr, p->src, al) == 0 && c->info.ep[L4_CLIENT].port == p->sport ?
		      L4_CLIENT : L4_SERVER;
	c->info.side[dir].pkts++;
	c->info.side[dir].bytes += origlen;
	c->info.last_ns = ts_ns;
	if (p->proto == 17) {
		deliver(l, c, dir, p->payload, p->payload_len);
		return 0;
	}
	return tcp_segment(l, c, dir, p);
}

static bool frag_complete(const struct frag *f)
{
	size_t blocks = (f->total + 7) / 8;

	if (f->total == 0)
		return false;
	for (size_t b = 0; b < blocks; b++)
		if (!(f->seen[b / 8] & (1u << (b % 8))))
			return false;
	return true;
}

/* RFC 791, section 3.2 (reassembly), with RFC 815's observation that holes can be kept
 * as a bitmap of 8-byte blocks: fragment offsets count in those. */
static int fragment(struct l4 *l, uint64_t ts_ns, const struct pkt *pk, size_t origlen)
{
	size_t off = pk->frag_off, n = pk->payload_len, end = off + n, i;
	struct frag *f = NULL;
	struct pkt out;
	int rc = 0;

	for (i = l->nfrags; i-- > 0;)
		if (ts_ns - l->frags[i].first_ns > l->lim.frag_timeout_ns && ts_ns > l->frags[i].first_ns)
			frag_remove(l, i, true);
	/* A cut fragment cannot be placed; all but the last must fill whole blocks. */
	if (pk->family != 4 || pk->cut || end > FRAG_MAX_LEN || (pk->frag_more && (n == 0 || n % 8 != 0))) {
		l->st.frag_dropped++;
		return 0;
	}
	for (i = 0; i < l->nfrags && f == NULL; i++)
		if (l->frags[i].id == pk->frag_id && l->frags[i].proto == pk->proto &&
		    memcmp(l->frags[i].src, pk->src, 4) == 0 && memcmp(l->frags[i].dst, pk->dst, 4) == 0)
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
		memcpy(f->src, pk->src, 4);
		memcpy(f->dst, pk->dst, 4);
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
			l->st.frag_bad_overlaps += memcmp(f->data + from, pk->payload + (from - off), to - from) != 0;
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
		rc = l4_packet(l, ts_ns, &out, origlen);
	else
		l->st.decode_errs++;
	frag_remove(l, (size_t)(f - l->frags), false);
	return rc;
}

int l4_frame(struct l4 *l, uint64_t ts_ns, uint32_t linktype, const uint8_t *p, size_t len, size_t origlen)
{
	struct pkt pk;
	int rc;

	l->st.pkts++;
	rc = pkt_decode(linktype, p, len, &pk);
	if (rc == PKT_EFRAG) {
		l->st.frag_pkts++;
		return fragment(l, ts_ns, &pk, origlen);
	}
	if (rc != PKT_OK) {
		l->st.decode_errs++;
		return rc;
	}
	return l4_packet(l, ts_ns, &pk, origlen);
}

void l4_finish(struct l4 *l)
{
	while (l->nfrags > 0)
		frag_remove(l, l->nfrags - 1, true);
	for (size_t i = 0; i < l->nconns; i++) {
		half_end(l, &l->conns[i], L4_CLIENT);
		half_end(l, &l->conns[i], L4_SERVER);
	}
}

size_t l4_conn_count(const struct l4 *l)
{
	return l->nconns;
}

const struct l4_conn_info *l4_conn(const struct l4 *l, size_t conn_id)
{
	return conn_id < l->nconns ? &l->conns[conn_id].info : NULL;
}

const struct l4_stats *l4_stats(const struct l4 *l)
{
	return &l->st;
}

const char *l4_state_name(enum l4_state s)
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
