/* Test helper for the IPVS VM (rvs-sync fixtures), built static and added to the VM's initrd
 * by run.sh:
 *   synctool tcp SRC SPORT DST DPORT FLAGS   raw TCP packets, one per letter of FLAGS:
 *                                            S=SYN A=ACK P=PSH+ACK with 1 byte F=FIN+ACK R=RST
 *   synctool udp SRC SPORT DST DPORT N       N datagrams from SRC:SPORT
 *   synctool capture IFACE PORT SECONDS      prints the UDP payload of every IPv4 datagram to
 *                                            PORT leaving IFACE, one hex line each
 *   synctool send IFADDR GROUP PORT HEX      sends HEX as one datagram to GROUP:PORT out of the
 *                                            interface holding IFADDR, multicast loop on */
#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/ip.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static unsigned short csum(const void *data, int len, unsigned int sum)
{
	const unsigned char *p = data;
	for (; len > 1; len -= 2, p += 2) sum += (p[0] << 8) | p[1];
	if (len) sum += p[0] << 8;
	while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
	return htons(~sum & 0xffff);
}

static int tcp(char **a)
{
	int s = socket(AF_INET, SOCK_RAW, IPPROTO_RAW);
	if (s < 0) { perror("raw socket"); return 1; }
	struct in_addr src, dst;
	inet_pton(AF_INET, a[0], &src); inet_pton(AF_INET, a[2], &dst);
	unsigned int seq = 1000, ack = 5000;
	for (const char *f = a[4]; *f; f++) {
		unsigned char pkt[64] = {0};
		struct iphdr *ip = (struct iphdr *)pkt;
		struct tcphdr *th = (struct tcphdr *)(pkt + 20);
		int dlen = *f == 'P';
		ip->version = 4; ip->ihl = 5; ip->ttl = 64; ip->protocol = IPPROTO_TCP;
		ip->tot_len = htons(40 + dlen); ip->saddr = src.s_addr; ip->daddr = dst.s_addr;
		ip->check = csum(ip, 20, 0);
		th->source = htons(atoi(a[1])); th->dest = htons(atoi(a[3]));
		th->seq = htonl(seq); th->doff = 5; th->window = htons(65535);
		switch (*f) {
		case 'S': th->syn = 1; seq++; break;
		case 'A': th->ack = 1; break;
		case 'P': th->ack = 1; th->psh = 1; pkt[40] = 'x'; seq++; break;
		case 'F': th->ack = 1; th->fin = 1; seq++; break;
		case 'R': th->rst = 1; break;
		default: fprintf(stderr, "bad flag %c\n", *f); return 2;
		}
		if (th->ack) th->ack_seq = htonl(ack);
		unsigned char ph[12];
		memcpy(ph, &ip->saddr, 4); memcpy(ph + 4, &ip->daddr, 4);
		ph[8] = 0; ph[9] = IPPROTO_TCP; ph[10] = 0; ph[11] = 20 + dlen;
		unsigned int sum = 0;
		for (int i = 0; i < 12; i += 2) sum += (ph[i] << 8) | ph[i + 1];
		th->check = csum(th, 20 + dlen, sum);
		struct sockaddr_in to = { .sin_family = AF_INET, .sin_addr = dst };
		if (sendto(s, pkt, 40 + dlen, 0, (struct sockaddr *)&to, sizeof to) < 0) { perror("sendto"); return 1; }
		usleep(50000);
	}
	return 0;
}

static int udp(char **a)
{
	int s = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in src = { .sin_family = AF_INET, .sin_port = htons(atoi(a[1])) };
	struct sockaddr_in dst = { .sin_family = AF_INET, .sin_port = htons(atoi(a[3])) };
	inet_pton(AF_INET, a[0], &src.sin_addr); inet_pton(AF_INET, a[2], &dst.sin_addr);
	if (bind(s, (struct sockaddr *)&src, sizeof src)) { perror("bind"); return 1; }
	for (int i = 0; i < atoi(a[4]); i++) {
		sendto(s, "u", 1, 0, (struct sockaddr *)&dst, sizeof dst);
		usleep(50000);
	}
	return 0;
}

static int capture(char **a)
{
	int s = socket(AF_PACKET, SOCK_DGRAM, htons(ETH_P_ALL));
	if (s < 0) { perror("packet socket"); return 1; }
	struct sockaddr_ll ll = { .sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL),
				  .sll_ifindex = if_nametoindex(a[0]) };
	if (bind(s, (struct sockaddr *)&ll, sizeof ll)) { perror("bind"); return 1; }
	int port = atoi(a[1]);
	time_t end = time(NULL) + atoi(a[2]);
	while (time(NULL) < end) {
		struct pollfd p = { .fd = s, .events = POLLIN };
		if (poll(&p, 1, 200) <= 0) continue;
		unsigned char b[70000];
		int n = recv(s, b, sizeof b, 0);
		if (n < 28 || (b[0] >> 4) != 4 || b[9] != IPPROTO_UDP) continue;
		int ihl = (b[0] & 15) * 4;
		if (((b[ihl + 2] << 8) | b[ihl + 3]) != port) continue;
		for (int i = ihl + 8; i < n; i++) printf("%02x", b[i]);
		printf("\n");
		fflush(stdout);
	}
	return 0;
}

static int send_hex(char **a)
{
	int s = socket(AF_INET, SOCK_DGRAM, 0);
	struct in_addr ifaddr; inet_pton(AF_INET, a[0], &ifaddr);
	setsockopt(s, IPPROTO_IP, IP_MULTICAST_IF, &ifaddr, sizeof ifaddr);
	unsigned char loop = 1;
	setsockopt(s, IPPROTO_IP, IP_MULTICAST_LOOP, &loop, sizeof loop);
	struct sockaddr_in dst = { .sin_family = AF_INET, .sin_port = htons(atoi(a[2])) };
	inet_pton(AF_INET, a[1], &dst.sin_addr);
	size_t n = strlen(a[3]) / 2;
	unsigned char *b = malloc(n + 1);
	for (size_t i = 0; i < n; i++) sscanf(a[3] + 2 * i, "%2hhx", &b[i]);
	if (sendto(s, b, n, 0, (struct sockaddr *)&dst, sizeof dst) < 0) { perror("sendto"); return 1; }
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 7 && !strcmp(argv[1], "tcp")) return tcp(argv + 2);
	if (argc >= 7 && !strcmp(argv[1], "udp")) return udp(argv + 2);
	if (argc >= 5 && !strcmp(argv[1], "capture")) return capture(argv + 2);
	if (argc >= 6 && !strcmp(argv[1], "send")) return send_hex(argv + 2);
	fprintf(stderr, "usage: see the comment at the top of synctool.c\n");
	return 2;
}
