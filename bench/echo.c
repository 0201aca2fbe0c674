/* The floor of the benchmark: a bare blocking UDP responder. One recvfrom
 * and one sendto per query, the reply being the query with QR set. No DNS
 * server can answer with fewer system calls per query unless it batches. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>

int main(int argc, char **argv)
{
	struct sockaddr_in addr = { .sin_family = AF_INET };
	unsigned char buf[4096];
	int fd;

	if (argc != 2) {
		fprintf(stderr, "usage: echo PORT\n");
		return 2;
	}
	addr.sin_port = htons((unsigned short)atoi(argv[1]));
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_DGRAM, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		perror("echo");
		return 1;
	}
	for (;;) {
		struct sockaddr_in from;
		socklen_t len = sizeof(from);
		ssize_t n = recvfrom(fd, buf, sizeof(buf), 0, (struct sockaddr *)&from, &len);

		if (n < 12)
			continue;
		buf[2] |= 0x80;
		sendto(fd, buf, (size_t)n, 0, (struct sockaddr *)&from, len);
	}
}
