/* Lease a flow label on an IPv6 socket, then share it from a second
 * socket (IPV6_FLOWLABEL_MGR, ipv6_flowlabel_opt). Then the fix: a process
 * without CAP_NET_ADMIN (uid 65534) shares the label again and again from
 * one socket; each share is one more lease on that socket, and the fix
 * caps them at FL_MAX_PER_SOCK (32): the 33rd must fail with ENOBUFS
 * (unpatched, all 40 succeed). Then release them all. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <linux/in6.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <errno.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef IPV6_FLOWLABEL_MGR
#define IPV6_FLOWLABEL_MGR 32
#endif

int main(void)
{
	struct in6_flowlabel_req fr;
	int s1 = socket(AF_INET6, SOCK_DGRAM, 0), s2 = socket(AF_INET6, SOCK_DGRAM, 0);
	if (s1 < 0 || s2 < 0) { perror("socket"); return 1; }
	memset(&fr, 0, sizeof fr);
	inet_pton(AF_INET6, "::1", &fr.flr_dst);
	fr.flr_label = htonl(0x12345);
	fr.flr_action = IPV6_FL_A_GET;
	fr.flr_flags = IPV6_FL_F_CREATE;
	fr.flr_share = IPV6_FL_S_ANY;
	if (setsockopt(s1, IPPROTO_IPV6, IPV6_FLOWLABEL_MGR, &fr, sizeof fr) != 0) { perror("create flow label"); return 1; }
	fr.flr_flags = 0;
	if (setsockopt(s2, IPPROTO_IPV6, IPV6_FLOWLABEL_MGR, &fr, sizeof fr) != 0) { perror("share flow label"); return 1; }
	pid_t pid = fork();
	if (pid == 0) {
		if (setresgid(65534, 65534, 65534) != 0 || setresuid(65534, 65534, 65534) != 0) { perror("setresuid"); _exit(1); }
		int s3 = socket(AF_INET6, SOCK_DGRAM, 0);
		if (s3 < 0) { perror("socket"); _exit(1); }
		for (int i = 1; i <= 40; i++) {
			if (setsockopt(s3, IPPROTO_IPV6, IPV6_FLOWLABEL_MGR, &fr, sizeof fr) == 0)
				continue;
			if (errno == ENOBUFS && i == 33)
				_exit(0);
			fprintf(stderr, "unprivileged share %d: %s, want success up to 32 and ENOBUFS at 33\n", i, strerror(errno));
			_exit(1);
		}
		fprintf(stderr, "unprivileged shares: 40 leases of one label on one socket, want ENOBUFS at 33 (FL_MAX_PER_SOCK)\n");
		_exit(1);
	}
	int st;
	if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
		return 1;
	fr.flr_action = IPV6_FL_A_PUT;
	if (setsockopt(s1, IPPROTO_IPV6, IPV6_FLOWLABEL_MGR, &fr, sizeof fr) != 0) { perror("put"); return 1; }
	close(s1);
	close(s2);
	return 0;
}
