int add(int, int);
const char *greet(void);
