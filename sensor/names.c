/* SPDX-License-Identifier: BSD-2-Clause */
#include "sensor/names.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "shared/dns.h"
#include "shared/log.h"
#include "shared/pkt.h"
#include "proto/wire.h"

#define NAMES_BUCKETS          16384 /* power of two */
#define NAMES_FRAMES_PER_FLUSH 4     /* frames offered to the uplink per flush */
#define NAMES_HOSTS_LINE       4096
#define NAMES_HOSTS_MAX_BYTES  (16u << 20)

/* Precedence of sources: a mapping is only replaced by a source of equal or higher rank. */
static int
names_rank(uint8_t source)
{
	switch (source) {
	case PROTO_NSRC_STATIC:
		return 3;
	case PROTO_NSRC_HOSTS:
		return 2;
	}
	return 1;
}

struct names_key {
	uint8_t family;
	uint8_t addr[16];
	uint16_t port;
};

struct names_entry {
	struct names_entry *hnext;               /* hash chain */
	struct names_entry *lru_prev, *lru_next; /* learned entries, most recently seen first */
	struct names_key key;
	uint64_t ts_ns; /* when the current mapping was learned */
	uint32_t ttl_s;
	uint8_t source;
	bool pinned;  /* configured (hosts file, static): not evicted */
	uint32_t gen; /* configuration generation that last named it */
	char *name;
	char *ns;
};

/* A configured mapping, parsed before anything in the table changes. */
struct names_item {
	struct names_key key;
	uint8_t source;
	char name[PROTO_MAX_NAME + 1];
	char ns[PROTO_MAX_NS + 1];
};

struct names {
	names_send_fn send;
	void *arg;
	struct ev_loop *loop;
	ev_timer timer;
	uint64_t seed;
	uint8_t dns_port[65536 / 8]; /* bitmap */
	bool any_port;
	struct names_entry *buckets[NAMES_BUCKETS];
	struct names_entry *lru_head, *lru_tail;
	size_t n_entries;
	uint32_t gen;
	/* Ring of events waiting to be sent. */
	struct proto_name *queue;
	size_t q_head, q_len;
	/* Resync: walking the buckets from this index, or idle. */
	bool resync;
	size_t resync_bucket;
	/* DNS answers being processed: the packet's time. */
	uint64_t pkt_ts;
	struct names_stats st;
	struct log_limit lim;
	/* Encoding space for one frame (about 90 KiB each, so not on the stack). */
	struct proto_names frame;
	uint8_t out[PROTO_NAMES_MAX_LEN];
};

static uint64_t
names_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* A seeded mix of the key: DNS answers are chosen by whoever runs the name servers, so
 * the bucket of an address must not be predictable from outside. */
static size_t
names_hash(const struct names *n, const struct names_key *k)
{
	uint64_t h = n->seed ^ ((uint64_t)k->family << 56) ^ ((uint64_t)k->port << 32);

	for (int i = 0; i < 16; i += 8) {
		uint64_t w;

		memcpy(&w, k->addr + i, 8);
		h ^= w;
		h *= 0xff51afd7ed558ccdull;
		h ^= h >> 33;
	}
	h *= 0xc4ceb9fe1a85ec53ull;
	h ^= h >> 33;
	return (size_t)(h & (NAMES_BUCKETS - 1));
}

static bool
names_key_eq(const struct names_key *a, const struct names_key *b)
{
	return a->family == b->family && a->port == b->port && memcmp(a->addr, b->addr, 16) == 0;
}

static struct names_entry *
names_find(struct names *n, const struct names_key *k)
{
	for (struct names_entry *e = n->buckets[names_hash(n, k)]; e; e = e->hnext)
		if (names_key_eq(&e->key, k))
			return e;
	return NULL;
}

static void
names_lru_unlink(struct names *n, struct names_entry *e)
{
	if (e->lru_prev)
		e->lru_prev->lru_next = e->lru_next;
	else if (n->lru_head == e)
		n->lru_head = e->lru_next;
	if (e->lru_next)
		e->lru_next->lru_prev = e->lru_prev;
	else if (n->lru_tail == e)
		n->lru_tail = e->lru_prev;
	e->lru_prev = e->lru_next = NULL;
}

static void
names_lru_front(struct names *n, struct names_entry *e)
{
	names_lru_unlink(n, e);
	e->lru_next = n->lru_head;
	if (n->lru_head)
		n->lru_head->lru_prev = e;
	n->lru_head = e;
	if (!n->lru_tail)
		n->lru_tail = e;
}

static void
names_entry_free(struct names_entry *e)
{
	if (!e)
		return;
	free(e->name);
	free(e->ns);
	free(e);
}

static void
names_remove(struct names *n, struct names_entry *e)
{
	struct names_entry **pp = &n->buckets[names_hash(n, &e->key)];

	while (*pp && *pp != e)
		pp = &(*pp)->hnext;
	if (*pp)
		*pp = e->hnext;
	names_lru_unlink(n, e);
	n->n_entries--;
	names_entry_free(e);
}

/* The event announcing the current mapping of e. */
static void
names_fill_event(struct proto_name *ev, const struct names_entry *e)
{
	memset(ev, 0, sizeof(*ev));
	ev->ts_ns = e->ts_ns;
	ev->source = e->source;
	ev->family = e->key.family;
	memcpy(ev->addr, e->key.addr, 16);
	ev->port = e->key.port;
	ev->ttl_s = e->ttl_s > PROTO_MAX_TTL ? 0 : e->ttl_s;
	snprintf(ev->name, sizeof(ev->name), "%s", e->name);
	snprintf(ev->ns, sizeof(ev->ns), "%s", e->ns);
}

/* Queues the event for the current mapping of e; counts a drop when the queue is full.
 * The table keeps the new mapping either way, so the next resync still carries it. */
static void
names_enqueue(struct names *n, const struct names_entry *e)
{
	n->st.events++;
	if (n->q_len == NAMES_QUEUE_MAX) {
		n->st.drops++;
		if (log_limit_ok(&n->lim, 3, 60))
			log_warnx(
				"names: event queue full (%d events not yet sent): dropped the event for %s "
				"(%" PRIu64 " dropped so far)",
				NAMES_QUEUE_MAX, e->name, n->st.drops);
		return;
	}
	names_fill_event(&n->queue[(n->q_head + n->q_len) % NAMES_QUEUE_MAX], e);
	n->q_len++;
}

static bool
names_same(const struct names_entry *e, const char *name, const char *ns)
{
	return strcmp(e->name, name) == 0 && strcmp(e->ns, ns) == 0;
}

/*
 * Records that key is called name@ns according to source. Queues an event when that is
 * a change; `force` (configuration reload) ignores precedence. Returns the entry, or NULL
 * when it could not be kept (out of memory, or only configured entries to evict).
 */
static struct names_entry *
names_set(struct names *n, const struct names_key *k, const char *name, const char *ns, uint8_t source,
	uint64_t ts_ns, uint32_t ttl_s, bool force)
{
	struct names_entry *e = names_find(n, k);

	if (e) {
		if (!force && e->pinned && names_rank(source) < names_rank(e->source))
			return e; /* a configured name stays */
		if (!e->pinned)
			names_lru_front(n, e);
		e->ttl_s = ttl_s;
		if (names_same(e, name, ns)) {
			e->source = source; /* not a change: no event */
			return e;
		}
		char *nn = strdup(name), *nns = strdup(ns);

		if (!nn || !nns) {
			free(nn);
			free(nns);
			return NULL;
		}
		free(e->name);
		free(e->ns);
		e->name = nn;
		e->ns = nns;
		e->source = source;
		e->ts_ns = ts_ns;
		names_enqueue(n, e);
		return e;
	}
	if (n->n_entries >= NAMES_MAX_ENTRIES) {
		if (!n->lru_tail) {
			if (log_limit_ok(&n->lim, 3, 60))
				log_warnx("names: %d configured names fill the table: %s not kept",
					NAMES_MAX_ENTRIES, name);
			return NULL;
		}
		names_remove(n, n->lru_tail);
		n->st.evictions++;
	}
	e = calloc(1, sizeof(*e));
	if (!e || !(e->name = strdup(name)) || !(e->ns = strdup(ns))) {
		names_entry_free(e);
		return NULL;
	}
	e->key = *k;
	e->source = source;
	e->ts_ns = ts_ns;
	e->ttl_s = ttl_s;
	size_t b = names_hash(n, k);
	e->hnext = n->buckets[b];
	n->buckets[b] = e;
	n->n_entries++;
	names_lru_front(n, e);
	names_enqueue(n, e);
	return e;
}

/* ---- Passive DNS ------------------------------------------------------------------ */

/* Kubernetes service and pod names carry their namespace: <svc>.<ns>.svc.<zone> (also
 * <pod>.<svc>.<ns>.svc.<zone> for headless services) and <pod-ip>.<ns>.pod.<zone>. */
static void
names_k8s_ns(const char *name, char ns[PROTO_MAX_NS + 1])
{
	const char *label[8];
	size_t len[8];
	int nl = 0;
	const char *s = name;

	ns[0] = '\0';
	while (nl < 8) {
		const char *dot = strchr(s, '.');

		label[nl] = s;
		len[nl] = dot ? (size_t)(dot - s) : strlen(s);
		nl++;
		if (!dot)
			break;
		s = dot + 1;
	}
	for (int i = 2; i < nl - 1; i++) {
		bool svc = len[i] == 3 && memcmp(label[i], "svc", 3) == 0;
		bool pod = i == 2 && len[i] == 3 && memcmp(label[i], "pod", 3) == 0;

		if ((svc || pod) && len[i - 1] <= PROTO_MAX_NS) {
			memcpy(ns, label[i - 1], len[i - 1]);
			ns[len[i - 1]] = '\0';
			return;
		}
	}
}

static void
names_on_dns(void *arg, const struct dns_map *m)
{
	struct names *n = arg;
	struct names_key k = { .family = m->family };
	char ns[PROTO_MAX_NS + 1];

	memcpy(k.addr, m->addr, m->family == 4 ? 4 : 16);
	names_k8s_ns(m->name, ns);
	names_set(n, &k, m->name, ns, PROTO_NSRC_DNS, n->pkt_ts, m->ttl, false);
}

static bool
names_is_dns_port(const struct names *n, uint16_t port)
{
	return n->dns_port[port >> 3] & (1u << (port & 7));
}

void
names_packet(struct names *n, uint32_t linktype, uint64_t ts_ns, const uint8_t *data, uint32_t caplen)
{
	struct pkt p;
	int rc;

	if (!n->any_port || pkt_decode(linktype, data, caplen, &p) != PKT_OK)
		return;
	if (!names_is_dns_port(n, p.sport) && !names_is_dns_port(n, p.dport))
		return;
	if (p.payload_len == 0)
		return;
	n->pkt_ts = ts_ns;
	if (p.proto == 17) {
		rc = dns_parse(p.payload, p.payload_len, names_on_dns, n);
	} else {
		/* Only messages wholly inside this segment: no TCP reassembly here. */
		rc = dns_parse_tcp(p.payload, p.payload_len, names_on_dns, n);
		if (rc == DNS_ETRUNC) {
			n->st.dns_tcp_split++;
			return;
		}
	}
	if (rc >= 0)
		n->st.dns_messages++;
	else if (rc != DNS_ENOTRESP)
		n->st.dns_errors++;
}

/* ---- Configured names ------------------------------------------------------------- */

static void
names_lower(char *s)
{
	for (; *s; s++)
		if (*s >= 'A' && *s <= 'Z')
			*s = (char)(*s + ('a' - 'A'));
}

/* Parses an address with an optional port: "1.2.3.4", "1.2.3.4:80", "2001:db8::1",
 * "[2001:db8::1]", "[2001:db8::1]:443". */
static int
names_parse_addr(const char *s, size_t len, struct names_key *k)
{
	char buf[INET6_ADDRSTRLEN + 16];
	const char *host = buf, *port = NULL;

	if (len == 0 || len >= sizeof(buf))
		return -1;
	memcpy(buf, s, len);
	buf[len] = '\0';
	memset(k, 0, sizeof(*k));
	if (buf[0] == '[') {
		char *rb = strchr(buf, ']');

		if (!rb || (rb[1] != '\0' && rb[1] != ':') || (rb[1] == ':' && rb[2] == '\0'))
			return -1;
		*rb = '\0';
		host = buf + 1;
		port = rb[1] == ':' ? rb + 2 : NULL;
		if (inet_pton(AF_INET6, host, k->addr) != 1)
			return -1;
		k->family = 6;
	} else if (inet_pton(AF_INET6, buf, k->addr) == 1) {
		k->family = 6;
	} else {
		char *colon = strchr(buf, ':');

		if (colon) {
			*colon = '\0';
			port = colon + 1;
		}
		if (inet_pton(AF_INET, buf, k->addr) != 1)
			return -1;
		k->family = 4;
	}
	if (port) {
		char *end;
		long v = strtol(port, &end, 10);

		if (*port < '0' || *port > '9' || *end || v < 1 || v > 65535)
			return -1;
		k->port = (uint16_t)v;
	}
	return 0;
}

/* "ADDR=NAME[@NS]" into it; the reason in err on failure. */
static int
names_parse_static(const char *s, struct names_item *it, char *err, size_t errlen)
{
	const char *eq = strchr(s, '='), *name, *at;
	size_t nlen, nslen;

	memset(it, 0, sizeof(*it));
	it->source = PROTO_NSRC_STATIC;
	if (!eq || names_parse_addr(s, (size_t)(eq - s), &it->key) != 0) {
		snprintf(err, errlen,
			"names.static: '%s': expected IP=NAME, IP:PORT=NAME or [IPv6]:PORT=NAME, "
			"optionally @NAMESPACE",
			s);
		return -1;
	}
	name = eq + 1;
	at = strchr(name, '@');
	nlen = at ? (size_t)(at - name) : strlen(name);
	nslen = at ? strlen(at + 1) : 0;
	if (nlen < 1 || !proto_name_valid(name, nlen, PROTO_MAX_NAME) ||
		(at && (nslen < 1 || !proto_name_valid(at + 1, nslen, PROTO_MAX_NS)))) {
		snprintf(err, errlen,
			"names.static: '%s': a name is 1..%d bytes of dot-separated labels of "
			"letters, digits, '-' and '_' (a namespace 1..%d bytes of the same)",
			s, PROTO_MAX_NAME, PROTO_MAX_NS);
		return -1;
	}
	memcpy(it->name, name, nlen);
	if (at)
		memcpy(it->ns, at + 1, nslen);
	names_lower(it->name);
	names_lower(it->ns);
	return 0;
}

static int
names_parse_ports(const struct names_config *c, uint8_t bitmap[65536 / 8], char *err, size_t errlen)
{
	memset(bitmap, 0, 65536 / 8);
	for (size_t i = 0; i < c->n_dns_ports; i++) {
		const char *s = c->dns_ports[i];
		char *end;
		long v = strtol(s, &end, 10);

		if (*s < '0' || *s > '9' || *end || v < 1 || v > 65535) {
			snprintf(err, errlen, "names.dns_ports: '%s' is not a port number (1..65535)", s);
			return -1;
		}
		bitmap[v >> 3] |= (uint8_t)(1u << (v & 7));
	}
	return 0;
}

struct names_items {
	struct names_item *v;
	size_t n, cap;
	uint64_t skipped; /* hosts-file lines with an unusable address or name */
};

static struct names_item *
names_items_add(struct names_items *l)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 64;
		struct names_item *v = realloc(l->v, cap * sizeof(*v));

		if (!v)
			return NULL;
		l->v = v;
		l->cap = cap;
	}
	return &l->v[l->n++];
}

/* hosts(5): "ADDRESS CANONICAL_NAME [ALIASES...]", '#' to the end of a line. The
 * canonical name is the one an address maps to (as gethostbyaddr() answers). */
static int
names_read_hosts(const char *path, struct names_items *l, char *err, size_t errlen)
{
	FILE *f = fopen(path, "re");
	char line[NAMES_HOSTS_LINE];
	size_t total = 0;

	if (!f) {
		snprintf(err, errlen, "names.hosts_file: cannot read %s: %s", path, strerror(errno));
		return -1;
	}
	while (fgets(line, sizeof(line), f)) {
		char *save = NULL, *addr, *name, *hash = strchr(line, '#');
		struct names_item *it;
		struct names_key k;

		total += strlen(line);
		if (total > NAMES_HOSTS_MAX_BYTES) {
			snprintf(err, errlen, "names.hosts_file: %s is larger than %u MiB", path,
				NAMES_HOSTS_MAX_BYTES >> 20);
			fclose(f);
			return -1;
		}
		if (hash)
			*hash = '\0';
		addr = strtok_r(line, " \t\r\n", &save);
		name = addr ? strtok_r(NULL, " \t\r\n", &save) : NULL;
		if (!addr)
			continue;
		/* Zone indices ("fe80::1%eth0") and ports have no place in a hosts file. */
		if (!name || strchr(addr, '[') || names_parse_addr(addr, strlen(addr), &k) != 0 ||
			k.port != 0 || !proto_name_valid(name, strlen(name), PROTO_MAX_NAME) || !*name) {
			l->skipped++;
			continue;
		}
		if (!(it = names_items_add(l))) {
			snprintf(err, errlen, "names.hosts_file: out of memory");
			fclose(f);
			return -1;
		}
		memset(it, 0, sizeof(*it));
		it->key = k;
		it->source = PROTO_NSRC_HOSTS;
		snprintf(it->name, sizeof(it->name), "%s", name);
		names_lower(it->name);
	}
	if (ferror(f)) {
		snprintf(err, errlen, "names.hosts_file: error reading %s", path);
		fclose(f);
		return -1;
	}
	fclose(f);
	return 0;
}

int
names_check(const struct names_config *c, char *err, size_t errlen)
{
	uint8_t bitmap[65536 / 8];
	struct names_item it;

	if (names_parse_ports(c, bitmap, err, errlen) != 0)
		return -1;
	for (size_t i = 0; i < c->n_statics; i++)
		if (names_parse_static(c->statics[i], &it, err, errlen) != 0)
			return -1;
	return 0;
}

/* Static names and the hosts file, static first: for one key, the first item wins. */
static int
names_collect(const struct names_config *c, struct names_items *l, char *err, size_t errlen)
{
	for (size_t i = 0; i < c->n_statics; i++) {
		struct names_item *it = names_items_add(l);

		if (!it) {
			snprintf(err, errlen, "names.static: out of memory");
			return -1;
		}
		if (names_parse_static(c->statics[i], it, err, errlen) != 0)
			return -1;
	}
	if (c->hosts_file && *c->hosts_file && names_read_hosts(c->hosts_file, l, err, errlen) != 0)
		return -1;
	return 0;
}

int
names_load(struct names *n, const struct names_config *c, char *err, size_t errlen)
{
	struct names_items l = { 0 };
	uint8_t bitmap[65536 / 8];
	uint64_t now = names_now_ns();
	size_t statics = 0, hosts = 0, demoted = 0;

	if (names_parse_ports(c, bitmap, err, errlen) != 0 || names_collect(c, &l, err, errlen) != 0) {
		free(l.v);
		return -1;
	}
	memcpy(n->dns_port, bitmap, sizeof(bitmap));
	n->any_port = c->n_dns_ports > 0;
	n->gen++;
	for (size_t i = 0; i < l.n; i++) {
		const struct names_item *it = &l.v[i];
		struct names_entry *e = names_find(n, &it->key);

		if (e && e->pinned && e->gen == n->gen)
			continue; /* named already by an earlier item of this load */
		e = names_set(n, &it->key, it->name, it->ns, it->source, now, 0, true);
		if (!e)
			continue;
		if (!e->pinned) {
			names_lru_unlink(n, e);
			e->pinned = true;
		}
		e->gen = n->gen;
		if (it->source == PROTO_NSRC_STATIC)
			statics++;
		else
			hosts++;
	}
	/* Names no longer configured stay as they are, but as learned ones: evictable, and
	 * replaceable by the next DNS answer. The history keeps them until then. */
	for (size_t b = 0; b < NAMES_BUCKETS; b++) {
		for (struct names_entry *e = n->buckets[b]; e; e = e->hnext) {
			if (e->pinned && e->gen != n->gen) {
				e->pinned = false;
				names_lru_front(n, e);
				demoted++;
			}
		}
	}
	log_info("names: %zu static names, %zu from %s (%" PRIu64
		 " lines skipped), %zu no longer configured; "
		 "DNS answers read on %zu port(s)",
		statics, hosts, c->hosts_file && *c->hosts_file ? c->hosts_file : "no hosts file", l.skipped,
		demoted, c->n_dns_ports);
	free(l.v);
	return 0;
}

/* ---- Sending ---------------------------------------------------------------------- */

/* Builds one frame from the queue, then from the resync walk; returns the events taken
 * from the queue in *from_queue and the bucket the walk reached in *next_bucket. */
static void
names_build(struct names *n, size_t *from_queue, size_t *next_bucket)
{
	struct proto_names *f = &n->frame;
	size_t b = n->resync_bucket;

	f->n = 0;
	while (f->n < PROTO_MAX_NAMES && f->n < n->q_len) {
		f->ev[f->n] = n->queue[(n->q_head + f->n) % NAMES_QUEUE_MAX];
		f->n++;
	}
	*from_queue = f->n;
	/* Whole buckets only, so that a bucket is never half sent when its chain changes
	 * before the next flush. */
	while (n->resync && b < NAMES_BUCKETS) {
		size_t in_bucket = 0;

		for (struct names_entry *e = n->buckets[b]; e; e = e->hnext)
			in_bucket++;
		if (in_bucket > (size_t)(PROTO_MAX_NAMES - f->n) && f->n > 0)
			break;
		/* A chain longer than a frame (it would take a broken hash) is cut. */
		for (struct names_entry *e = n->buckets[b]; e && f->n < PROTO_MAX_NAMES; e = e->hnext)
			names_fill_event(&f->ev[f->n++], e);
		b++;
	}
	*next_bucket = b;
}

void
names_flush(struct names *n)
{
	for (int i = 0; i < NAMES_FRAMES_PER_FLUSH && (n->q_len || n->resync); i++) {
		size_t from_queue, next_bucket;
		int len;

		names_build(n, &from_queue, &next_bucket);
		if (n->frame.n == 0) {
			n->resync = false; /* walked every bucket */
			break;
		}
		len = proto_names_encode(&n->frame, n->out, sizeof(n->out));
		if (len < 0) {
			/* Every name was validated on the way in; this is a bug, not input. */
			log_warnx("names: cannot encode %u events: %s; dropped", n->frame.n,
				proto_strerror(len));
			n->st.drops += from_queue;
		} else if (n->send(n->arg, n->out, (size_t)len) != 0) {
			return; /* not connected, or no room: offered again next time */
		} else {
			n->st.sent += n->frame.n;
		}
		n->q_head = (n->q_head + from_queue) % NAMES_QUEUE_MAX;
		n->q_len -= from_queue;
		if (n->resync) {
			n->resync_bucket = next_bucket;
			if (next_bucket >= NAMES_BUCKETS)
				n->resync = false;
		}
	}
}

bool
names_idle(const struct names *n)
{
	return n->q_len == 0 && !n->resync;
}

static void
names_on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	names_flush(w->data);
}

void
names_resync(struct names *n)
{
	n->resync = true;
	n->resync_bucket = 0;
}

struct names *
names_new(names_send_fn send, void *arg)
{
	struct names *n = calloc(1, sizeof(*n));

	if (!n)
		return NULL;
	n->queue = calloc(NAMES_QUEUE_MAX, sizeof(*n->queue));
	if (!n->queue) {
		free(n);
		return NULL;
	}
	n->send = send;
	n->arg = arg;
	if (getrandom(&n->seed, sizeof(n->seed), GRND_NONBLOCK) != sizeof(n->seed))
		n->seed = names_now_ns() ^ (uint64_t)(uintptr_t)n;
	ev_timer_init(&n->timer, names_on_timer, NAMES_FLUSH_MS / 1000.0, NAMES_FLUSH_MS / 1000.0);
	n->timer.data = n;
	return n;
}

void
names_start(struct names *n, struct ev_loop *loop)
{
	n->loop = loop;
	ev_timer_start(loop, &n->timer);
}

void
names_stats(const struct names *n, struct names_stats *out)
{
	*out = n->st;
	out->entries = n->n_entries;
	out->queued = n->q_len;
}

void
names_free(struct names *n)
{
	if (!n)
		return;
	if (n->loop)
		ev_timer_stop(n->loop, &n->timer);
	for (size_t b = 0; b < NAMES_BUCKETS; b++) {
		struct names_entry *e = n->buckets[b];

		while (e) {
			struct names_entry *next = e->hnext;

			names_entry_free(e);
			e = next;
		}
	}
	free(n->queue);
	free(n);
}
