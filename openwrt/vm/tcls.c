/*
 * tcls: lists the TC filters on an interface's clsact ingress, for
 * openwrt/vm-test.sh's guest lab (busybox's tc cannot show them).
 *
 *   tcls IFACE
 *
 * Prints one line per filter, `pref N KIND NAME` (NAME: the BPF program's
 * name, for kind bpf), and exits 0; 1 if the kernel refused the dump.
 * Asks over rtnetlink (RTM_GETTFILTER, parent ffff:fff2). Built static
 * with the target's cross gcc by vm-test.sh; needs only libc.
 */
#include <linux/netlink.h>
#include <linux/pkt_cls.h>
#include <linux/pkt_sched.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Finds attribute TYPE among the attributes at ATTRS (LEN bytes). */
static struct rtattr *find_attr(struct rtattr *attrs, int len, unsigned short type)
{
	for (struct rtattr *a = attrs; RTA_OK(a, len); a = RTA_NEXT(a, len))
		if (a->rta_type == type)
			return a;
	return NULL;
}

int main(int argc, char **argv)
{
	struct {
		struct nlmsghdr nh;
		struct tcmsg tc;
	} req = {
		.nh = { .nlmsg_len = sizeof(req), .nlmsg_type = RTM_GETTFILTER,
			.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP, .nlmsg_seq = 1 },
		.tc = { .tcm_family = AF_UNSPEC,
			.tcm_parent = TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_INGRESS) },
	};
	static char buf[32768];
	int fd;

	if (argc != 2 || (req.tc.tcm_ifindex = if_nametoindex(argv[1])) == 0) {
		fprintf(stderr, "usage: tcls IFACE (an existing interface)\n");
		return 2;
	}
	fd = socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE);
	if (fd < 0 || send(fd, &req, sizeof(req), 0) < 0) {
		perror("tcls: netlink");
		return 1;
	}
	for (;;) {
		int len = recv(fd, buf, sizeof(buf), 0);

		if (len <= 0) {
			perror("tcls: recv");
			return 1;
		}
		for (struct nlmsghdr *nh = (struct nlmsghdr *)buf; NLMSG_OK(nh, (unsigned)len);
		     nh = NLMSG_NEXT(nh, len)) {
			struct tcmsg *tc = NLMSG_DATA(nh);
			struct rtattr *attrs = (struct rtattr *)((char *)tc + NLMSG_ALIGN(sizeof(*tc)));
			int alen = nh->nlmsg_len - NLMSG_LENGTH(sizeof(*tc));
			struct rtattr *kind, *options, *name = NULL;

			if (nh->nlmsg_type == NLMSG_DONE)
				return 0;
			if (nh->nlmsg_type == NLMSG_ERROR) {
				fprintf(stderr, "tcls: the kernel refused the dump\n");
				return 1;
			}
			kind = find_attr(attrs, alen, TCA_KIND);
			/* The chain's head entry has no kind: not a filter. */
			if (!kind || tc->tcm_handle == 0)
				continue;
			options = find_attr(attrs, alen, TCA_OPTIONS);
			if (options)
				name = find_attr(RTA_DATA(options), RTA_PAYLOAD(options), TCA_BPF_NAME);
			printf("pref %u %s %s\n", TC_H_MAJ(tc->tcm_info) >> 16, (char *)RTA_DATA(kind),
			       name ? (char *)RTA_DATA(name) : "-");
		}
	}
}
