/* The fix's two halves, from user space over the loopback:
 *
 * 1. A datagram to a bound socket: the receive path looks the socket up
 *    (__udp4_lib_lookup, the primary-hash fallback's caller).
 * 2. An ICMP "fragmentation needed" (MTU 1280) quoting a datagram from a
 *    port no socket is bound to: udp_err now updates the route's path MTU
 *    even when no socket matches (before the fix only a matching socket's
 *    route was updated). A socket connected afterwards to the quoted
 *    destination must see IP_MTU 1280; unpatched it sees the loopback's
 *    65536.
 *
 * The destination is a random 127.x.y.z each run, so that a path MTU left
 * by an earlier run (they last 10 minutes) does not answer for this one. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

static uint16_t csum(const void *p, size_t n)
{
	const uint8_t *b = p;
	uint32_t s = 0;
	for (size_t i = 0; i + 1 < n; i += 2)
		s += (uint32_t)b[i] << 8 | b[i + 1];
	if (n & 1)
		s += (uint32_t)b[n - 1] << 8;
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return htons(~s & 0xffff);
}

static int mtu_to(struct in_addr dst)
{
	int s = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(9), .sin_addr = dst };
	int mtu = -1;
	socklen_t l = sizeof(mtu);
	if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    getsockopt(s, IPPROTO_IP, IP_MTU, &mtu, &l) < 0) {
		perror("IP_MTU");
		return -1;
	}
	close(s);
	return mtu;
}

int main(void)
{
	/* 1. A datagram over the loopback. */
	int r = socket(AF_INET, SOCK_DGRAM, 0), w = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof(a);
	struct timeval tv = { .tv_sec = 5 };
	char buf[64];
	if (r < 0 || w < 0 || bind(r, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    getsockname(r, (struct sockaddr *)&a, &al) < 0 ||
	    setsockopt(r, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0) {
		perror("udp socket");
		return 1;
	}
	if (sendto(w, "stent-over-udp", 14, 0, (struct sockaddr *)&a, sizeof(a)) != 14) {
		perror("sendto");
		return 1;
	}
	ssize_t n = recv(r, buf, sizeof(buf), 0);
	if (n != 14 || memcmp(buf, "stent-over-udp", 14) != 0) {
		fprintf(stderr, "datagram over the loopback: recv = %zd (errno %d), want \"stent-over-udp\"\n", n, errno);
		return 1;
	}

	/* 2. ICMP fragmentation needed for a datagram of an unbound port. */
	uint8_t rnd[3];
	int fd = open("/dev/urandom", O_RDONLY);
	if (fd < 0 || read(fd, rnd, 3) != 3) {
		perror("/dev/urandom");
		return 1;
	}
	struct in_addr dst = { htonl(127u << 24 | (uint32_t)(rnd[0] % 254 + 1) << 16 | (uint32_t)rnd[1] << 8 | (rnd[2] % 253 + 2)) };
	int before = mtu_to(dst);
	uint8_t pkt[8 + 20 + 8] = { 3, 4 }; /* ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED */
	pkt[6] = 1280 >> 8, pkt[7] = 1280 & 0xff;
	uint8_t *ip = pkt + 8, *udp = ip + 20;
	ip[0] = 0x45, ip[3] = 20 + 8 + 100, ip[6] = 0x40, ip[8] = 64, ip[9] = IPPROTO_UDP;
	uint32_t src = htonl(INADDR_LOOPBACK);
	memcpy(ip + 12, &src, 4);
	memcpy(ip + 16, &dst.s_addr, 4);
	uint16_t c = csum(ip, 20);
	memcpy(ip + 10, &c, 2);
	udp[0] = 0, udp[1] = 7; /* source port 7: no socket there */
	udp[2] = 0, udp[3] = 9;
	udp[5] = 108;
	c = csum(pkt, sizeof(pkt));
	memcpy(pkt + 2, &c, 2);
	int raw = socket(AF_INET, SOCK_RAW, IPPROTO_ICMP);
	struct sockaddr_in lo = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	if (raw < 0 || sendto(raw, pkt, sizeof(pkt), 0, (struct sockaddr *)&lo, sizeof(lo)) != sizeof(pkt)) {
		perror("raw icmp");
		return 1;
	}
	usleep(200000);
	int after = mtu_to(dst);
	if (after != 1280) {
		fprintf(stderr, "path MTU to %s after ICMP fragmentation needed (1280) for an unbound port: %d (before %d), want 1280\n", inet_ntoa(dst), after, before);
		return 1;
	}
	printf("datagram received; path MTU to %s: %d, then %d\n", inet_ntoa(dst), before, after);
	return 0;
}
