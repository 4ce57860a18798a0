/* O_ASYNC on both ends of a pipe (pipe_fasync), then SIGIO on write. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

static volatile sig_atomic_t got;
static void onio(int s) { got = 1; }

int main(void)
{
	int p[2];
	signal(SIGIO, onio);
	if (pipe(p) != 0) { perror("pipe"); return 1; }
	for (int i = 0; i < 2; i++) {
		if (fcntl(p[i], F_SETOWN, getpid()) != 0 || fcntl(p[i], F_SETFL, O_ASYNC | O_NONBLOCK) != 0) { perror("fcntl"); return 1; }
	}
	if (write(p[1], "x", 1) != 1) { perror("write"); return 1; }
	for (int i = 0; i < 100 && !got; i++) usleep(1000);
	if (!got) { fprintf(stderr, "no SIGIO\n"); return 1; }
	if (fcntl(p[0], F_SETFL, 0) != 0) { perror("fcntl clear"); return 1; }
	return 0;
}
