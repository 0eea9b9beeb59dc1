#include <string.h>
#include <stdlib.h>
#include "lib.h"
int add(int a, int b) { return a + b; }
const char *greet(void) { static char buf[32]; strcpy(buf, "built inside"); return buf; }
