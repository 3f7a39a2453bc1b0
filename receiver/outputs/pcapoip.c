/* SPDX-License-Identifier: BSD-2-Clause */
#include "receiver/outputs/pcapoip.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "receiver/outputs/live.h"
#include "shared/hostport.h"
#include "shared/log.h"

#define PCAPOIP_BUF         (64 * 1024)
/* Client threads at once: beyond, a new connection is closed at once (the hub itself
 * takes at most live.max_consumers; this bounds the threads a connection flood makes). */
#define PCAPOIP_MAX_CLIENTS 64

struct pcapoip_client {
	struct pcapoip_client *prev, *next;
	struct pcapoip *p;
	int fd;
	char name[INET6_ADDRSTRLEN + 32];
};

struct pcapoip {
	int fd;
	unsigned port;
	pthread_t th;
	bool running;
	int stop_pipe[2]; /* the accept thread's wake-up */
	pthread_mutex_t mu;
	pthread_cond_t cv; /* a client ended */
	struct pcapoip_client *clients;
	unsigned n_clients;
	bool stopping;
};

/* True when every address is a loopback one (the API's rule, api_listen_is_loopback()). */
static bool
pcapoip_loopback(const struct addrinfo *ai)
{
	for (; ai; ai = ai->ai_next) {
		if (ai->ai_family == AF_INET) {
			const struct sockaddr_in *s4 = (const void *)ai->ai_addr;
			if ((ntohl(s4->sin_addr.s_addr) >> 24) != 127)
				return false;
		} else if (ai->ai_family != AF_INET6 ||
			!IN6_IS_ADDR_LOOPBACK(
				&((const struct sockaddr_in6 *)(const void *)ai->ai_addr)->sin6_addr)) {
			return false;
		}
	}
	return true;
}

struct pcapoip *
pcapoip_new(const char *addr, char *err, size_t errlen)
{
	struct hostport hp;
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV },
			*ai = NULL;
	struct pcapoip *p = NULL;
	int rc, one = 1;

	if (hostport_parse(addr, HOSTPORT_LISTEN | HOSTPORT_PORT0, "outputs.pcap_over_ip.listen", &hp, err,
		    errlen) != 0)
		return NULL;
	if ((rc = getaddrinfo(*hp.host ? hp.host : NULL, hp.port, &hints, &ai)) != 0) {
		snprintf(err, errlen, "outputs.pcap_over_ip.listen: %s: %s", addr, gai_strerror(rc));
		return NULL;
	}
	if (!*hp.host || !pcapoip_loopback(ai)) {
		snprintf(err, errlen,
			"outputs.pcap_over_ip.listen: %s is not a loopback address: PCAP-over-IP carries "
			"no token and no TLS, so it is served on loopback only (reach it through an SSH "
			"tunnel, or use GET /api/v1/live, which has both)",
			addr);
		goto fail;
	}
	if (!(p = calloc(1, sizeof(*p)))) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	p->stop_pipe[0] = p->stop_pipe[1] = -1;
	p->fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
	if (p->fd < 0 || setsockopt(p->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
		bind(p->fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(p->fd, 16) != 0) {
		snprintf(err, errlen, "outputs.pcap_over_ip.listen: %s: %s", addr, strerror(errno));
		goto fail;
	}
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	if (getsockname(p->fd, (struct sockaddr *)&ss, &sl) == 0)
		p->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
							 : ((struct sockaddr_in *)&ss)->sin_port);
	if (pipe2(p->stop_pipe, O_CLOEXEC) != 0) {
		snprintf(err, errlen, "pipe: %s", strerror(errno));
		goto fail;
	}
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	freeaddrinfo(ai);
	return p;
fail:
	if (p) {
		if (p->fd >= 0)
			close(p->fd);
		free(p);
	}
	freeaddrinfo(ai);
	return NULL;
}

unsigned
pcapoip_port(const struct pcapoip *p)
{
	return p->port;
}

static int
pcapoip_send_all(int fd, const uint8_t *b, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		b += w;
		n -= (size_t)w;
	}
	return 0;
}

/* One client: the live stream until it goes away, is cut off or the receiver stops. */
static void *
pcapoip_client_main(void *arg)
{
	struct pcapoip_client *cl = arg;
	struct pcapoip *p = cl->p;
	struct live_consumer_opts lo = { .format = LIVE_PCAP, .name = cl->name, .fd = cl->fd };
	char err[512];
	uint8_t *buf = malloc(PCAPOIP_BUF);
	struct live_consumer *lc = buf ? live_consumer_new(&lo, err, sizeof(err)) : NULL;

	if (!buf)
		snprintf(err, sizeof(err), "out of memory");
	if (!lc) {
		log_warnx("pcap-over-ip %s: refused: %s", cl->name, err);
	} else {
		for (;;) {
			ssize_t n = live_consumer_read(lc, buf, PCAPOIP_BUF, 1000);
			struct pollfd pfd = { .fd = cl->fd, .events = POLLRDHUP };
			if (n < 0)
				break;
			if (n > 0 && pcapoip_send_all(cl->fd, buf, (size_t)n) != 0)
				break;
			/* A client that left while nothing flows is noticed within a second. */
			if (n == 0 && poll(&pfd, 1, 0) > 0 && (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR)))
				break;
		}
		live_consumer_free(lc);
	}
	free(buf);
	pthread_mutex_lock(&p->mu);
	if (cl->prev)
		cl->prev->next = cl->next;
	else
		p->clients = cl->next;
	if (cl->next)
		cl->next->prev = cl->prev;
	p->n_clients--;
	close(cl->fd);
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	free(cl);
	return NULL;
}

static void *
pcapoip_accept_main(void *arg)
{
	struct pcapoip *p = arg;
	struct pollfd pfd[2] = { { .fd = p->fd, .events = POLLIN },
		{ .fd = p->stop_pipe[0], .events = POLLIN } };

	for (;;) {
		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (pfd[1].revents)
			break;
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		int fd = accept4(p->fd, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC);
		if (fd < 0)
			continue; /* EMFILE, a client gone before accept: the next one may work */
		pthread_mutex_lock(&p->mu);
		bool full = p->n_clients >= PCAPOIP_MAX_CLIENTS;
		pthread_mutex_unlock(&p->mu);
		if (full) {
			close(fd);
			continue;
		}
		struct pcapoip_client *cl = calloc(1, sizeof(*cl));
		if (!cl) {
			close(fd);
			continue;
		}
		char host[INET6_ADDRSTRLEN] = "?";
		unsigned port = 0;
		if (ss.ss_family == AF_INET6) {
			inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, host, sizeof(host));
			port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
		} else if (ss.ss_family == AF_INET) {
			inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, host, sizeof(host));
			port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
		}
		snprintf(cl->name, sizeof(cl->name), "pcap-over-ip %s:%u", host, port);
		cl->fd = fd;
		cl->p = p;
		pthread_attr_t attr;
		pthread_t tid;
		pthread_attr_init(&attr);
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		pthread_mutex_lock(&p->mu);
		cl->next = p->clients;
		if (p->clients)
			p->clients->prev = cl;
		p->clients = cl;
		p->n_clients++;
		int rc = pthread_create(&tid, &attr, pcapoip_client_main, cl);
		if (rc != 0) {
			p->clients = cl->next;
			if (p->clients)
				p->clients->prev = NULL;
			p->n_clients--;
			close(fd);
			free(cl);
			log_warnx("pcap-over-ip: cannot start a client thread: %s", strerror(rc));
		}
		pthread_mutex_unlock(&p->mu);
		pthread_attr_destroy(&attr);
	}
	return NULL;
}

int
pcapoip_start(struct pcapoip *p, char *err, size_t errlen)
{
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	int rc = pthread_create(&p->th, NULL, pcapoip_accept_main, p);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		snprintf(err, errlen, "pcap-over-ip: cannot start its thread: %s", strerror(rc));
		return -1;
	}
	p->running = true;
	return 0;
}

void
pcapoip_free(struct pcapoip *p)
{
	if (!p)
		return;
	if (p->running) {
		char x = 0;
		if (write(p->stop_pipe[1], &x, 1) < 0)
			log_warnx("pcap-over-ip: cannot wake its thread: %s", strerror(errno));
		pthread_join(p->th, NULL);
	}
	/* Clients blocked in send() to a reader that stopped are woken by the shutdown. */
	pthread_mutex_lock(&p->mu);
	p->stopping = true;
	for (struct pcapoip_client *cl = p->clients; cl; cl = cl->next)
		shutdown(cl->fd, SHUT_RDWR);
	while (p->n_clients)
		pthread_cond_wait(&p->cv, &p->mu);
	pthread_mutex_unlock(&p->mu);
	close(p->fd);
	close(p->stop_pipe[0]);
	close(p->stop_pipe[1]);
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->cv);
	free(p);
}
