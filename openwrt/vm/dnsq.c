/*
 * dnsq: the LAN client of openwrt/vm-test.sh's guest lab (busybox has no
 * DNS client over TCP, and its nslookup says little about what came back).
 *
 *   dnsq [-t] SERVER NAME [COUNT]
 *
 * Asks SERVER (an IPv4 address, port 53) for NAME's A record, over UDP or
 * with -t over TCP, COUNT times one after another (default 1), waiting up
 * to 2 s for each reply. Prints one line,
 *   answered=N/COUNT rcode=R answers=A
 * (R and A of the last reply, -1 if none), and exits 0 only if every query
 * got a reply with its id and question count. COUNT > 1 is the load of the
 * guest's cache benchmark (the same name over and over: cache hits).
 *
 * Built static with the target's cross gcc by vm-test.sh; needs only libc.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

/* A query for NAME, type A, class IN, recursion desired; returns its
 * length, 0 if NAME does not fit. */
static size_t build_query(unsigned char *q, size_t cap, const char *name, unsigned id)
{
	size_t n = 12;
	const char *label = name;

	if (cap < 12 + strlen(name) + 2 + 4)
		return 0;
	memset(q, 0, 12);
	q[0] = id >> 8;
	q[1] = id & 0xff;
	q[2] = 0x01; /* RD */
	q[5] = 1;    /* QDCOUNT */
	while (*label) {
		const char *dot = strchr(label, '.');
		size_t len = dot ? (size_t)(dot - label) : strlen(label);

		if (len == 0 || len > 63)
			return 0;
		q[n++] = len;
		memcpy(q + n, label, len);
		n += len;
		label += len + (dot ? 1 : 0);
	}
	q[n++] = 0;
	q[n++] = 0;
	q[n++] = 1; /* A */
	q[n++] = 0;
	q[n++] = 1; /* IN */
	return n;
}

static int read_full(int fd, unsigned char *buf, size_t len)
{
	size_t got = 0;

	while (got < len) {
		ssize_t r = read(fd, buf + got, len - got);

		if (r <= 0)
			return -1;
		got += r;
	}
	return 0;
}

/* One exchange; returns the reply's length, -1 if none came. */
static int exchange(const struct sockaddr_in *server, int tcp, const unsigned char *q,
		    size_t qlen, unsigned char *reply, size_t cap)
{
	struct timeval tv = { .tv_sec = 2 };
	int fd = socket(AF_INET, tcp ? SOCK_STREAM : SOCK_DGRAM, 0);
	int n = -1;

	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (const struct sockaddr *)server, sizeof(*server)) < 0)
		goto out;
	if (tcp) {
		unsigned char hdr[2] = { qlen >> 8, qlen & 0xff };
		size_t len;

		if (write(fd, hdr, 2) != 2 || write(fd, q, qlen) != (ssize_t)qlen)
			goto out;
		if (read_full(fd, hdr, 2) < 0)
			goto out;
		len = (size_t)hdr[0] << 8 | hdr[1];
		if (len > cap || read_full(fd, reply, len) < 0)
			goto out;
		n = len;
	} else {
		if (send(fd, q, qlen, 0) != (ssize_t)qlen)
			goto out;
		n = recv(fd, reply, cap, 0);
	}
out:
	close(fd);
	return n;
}

int main(int argc, char **argv)
{
	struct sockaddr_in server = { .sin_family = AF_INET, .sin_port = htons(53) };
	unsigned char q[300], reply[4096];
	int tcp = 0, rcode = -1, answers = -1;
	long count = 1, answered = 0;

	if (argc > 1 && strcmp(argv[1], "-t") == 0) {
		tcp = 1;
		argv++;
		argc--;
	}
	if (argc < 3 || argc > 4 || inet_pton(AF_INET, argv[1], &server.sin_addr) != 1) {
		fprintf(stderr, "usage: dnsq [-t] SERVER_IPV4 NAME [COUNT]\n");
		return 2;
	}
	if (argc == 4 && (count = strtol(argv[3], NULL, 10)) < 1) {
		fprintf(stderr, "dnsq: COUNT must be 1 or more\n");
		return 2;
	}
	for (long i = 0; i < count; i++) {
		unsigned id = (getpid() + i * 7919) & 0xffff;
		size_t qlen = build_query(q, sizeof(q), argv[2], id);
		int n;

		if (qlen == 0) {
			fprintf(stderr, "dnsq: not a name dnsq can ask: %s\n", argv[2]);
			return 2;
		}
		n = exchange(&server, tcp, q, qlen, reply, sizeof(reply));
		if (n < 12 || (unsigned)(reply[0] << 8 | reply[1]) != id || !(reply[2] & 0x80) ||
		    (reply[4] << 8 | reply[5]) != 1)
			continue;
		answered++;
		rcode = reply[3] & 0x0f;
		answers = reply[6] << 8 | reply[7];
	}
	printf("answered=%ld/%ld rcode=%d answers=%d\n", answered, count, rcode, answers);
	return answered == count ? 0 : 1;
}
