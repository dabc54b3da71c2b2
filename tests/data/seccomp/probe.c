/* Test helper for tests/host/test_seccomp.py: makes system calls the Python interpreter cannot make
 * (through the i386 and x32 ABIs) and a tight getppid loop for the overhead measurement.
 *   probe int80      getpid through the i386 ABI (int 0x80, eax = 20); prints the result
 *   probe x32        getpid through the x32 ABI (nr 39 | __X32_SYSCALL_BIT); prints the result
 *   probe loop N     N getppid calls; prints the wall time in ns per call
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>

static long int80_getpid(void)
{
    long ret;
    __asm__ volatile ("int $0x80" : "=a"(ret) : "a"(20L) : "memory");
    return ret;
}

static long x32_getpid(void)
{
    long ret;
    __asm__ volatile ("syscall" : "=a"(ret) : "a"(0x40000000L | 39L) : "rcx", "r11", "memory");
    return ret;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "int80") == 0) {
        printf("%ld\n", int80_getpid());
        return 0;
    }
    if (argc >= 2 && strcmp(argv[1], "x32") == 0) {
        printf("%ld\n", x32_getpid());
        return 0;
    }
    if (argc >= 3 && strcmp(argv[1], "loop") == 0) {
        long n = atol(argv[2]);
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        for (long i = 0; i < n; i++)
            syscall(SYS_getppid);
        clock_gettime(CLOCK_MONOTONIC, &b);
        double ns = (b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec);
        printf("%.2f\n", ns / n);
        return 0;
    }
    fprintf(stderr, "usage: probe int80|x32|loop N\n");
    return 2;
}
