/* mlock then munlock anonymous memory: the munlock path updates NR_MLOCK. */
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

int main(void)
{
	size_t sz = 64 << 12;
	for (int i = 0; i < 4; i++) {
		char *p = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED) { perror("mmap"); return 1; }
		memset(p, 1, sz);
		if (mlock(p, sz) != 0) { perror("mlock"); return 1; }
		if (munlock(p, sz) != 0) { perror("munlock"); return 1; }
		munmap(p, sz);
	}
	return 0;
}
