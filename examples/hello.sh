#!/bin/sh
# A small workload for the README's first command: it prints what confines it.
echo "hello from inside secrun: uid=$(id -u) pid=$$ host=$(hostname)"
grep -E '^(NoNewPrivs|Seccomp|CapEff|CapBnd):' /proc/self/status
