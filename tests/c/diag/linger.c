/* Leaves a child and a grandchild behind and waits forever: who cleans up if the LibOS dies? */
#include <stdio.h>
#include <unistd.h>

int main(void)
{
    if (fork() == 0) {
        if (fork() == 0)
            for (;;)
                pause();
        for (;;)
            pause();
    }
    printf("ready\n");
    fflush(stdout);
    for (;;)
        pause();
}
