/* Dies of SIGSEGV writing to address 0x1234: the LibOS must report program, pid, signal, address. */
int main(void)
{
    volatile int *p = (int *)0x1234;
    *p = 1;
    return 0;
}
