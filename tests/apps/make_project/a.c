#include <stdio.h>
#include "lib.h"
int main(void) { printf("sum %d, %s\n", add(40, 2), greet()); return 0; }
