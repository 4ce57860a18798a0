/* A hugetlb mapping shows in /proc/self/smaps (smaps_hugetlb_range). */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

int main(void)
{
	size_t sz = 2 << 20;
	char *p = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
	if (p == MAP_FAILED) { perror("mmap MAP_HUGETLB"); return 1; }
	memset(p, 1, sz);
	FILE *f = fopen("/proc/self/smaps", "r");
	char line[256];
	int found = 0;
	while (fgets(line, sizeof line, f))
		if (strncmp(line, "Private_Hugetlb:", 16) == 0 && strstr(line, " 2048 kB"))
			found = 1;
	if (!found) { fprintf(stderr, "no Private_Hugetlb: 2048 kB in smaps\n"); return 1; }
	return 0;
}
