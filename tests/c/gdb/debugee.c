/* A program for `occlum gdb` tests (tests/integration/test_gdb.py): a breakpoint in main
 * and in a C library function (puts), a local variable to print, an exit status to report;
 * given the argument "crash", a write through a null pointer on a line of its own; given
 * "wait", a loop until a debugger clears `waiting` (occlum gdb --pid). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static volatile int waiting = 1;

static int counted(const char *word) {
    int letters = (int)strlen(word);
    return letters * 2;
}

int main(int argc, char **argv) {
    int answer = 21;
    volatile int *nowhere = NULL;
    if (argc > 1 && strcmp(argv[1], "crash") == 0) {
        *nowhere = answer; /* CRASH LINE */
    }
    if (argc > 1 && strcmp(argv[1], "wait") == 0) {
        puts("waiting");
        fflush(stdout);
        while (waiting)
            usleep(10000);
    }
    answer = counted("seven") + 13;
    puts("debugee says hello");
    return answer - 20;
}
