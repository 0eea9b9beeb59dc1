/* A /bin/true-like program (built dynamic and static) for spawn benchmarks. */
int main(void) { return 0; }
