/* small.o: a relocatable object with symbols, relocations and DWARF for the
 * safeelf tests, compiled once by gcc 12 and committed so that the tests run
 * without a compiler. Remake it with go generate ./internal/safeelf. */
struct point {
	int x, y;
};

extern int sink(struct point *p);

int area(struct point *p)
{
	return p->x * p->y + sink(p);
}
