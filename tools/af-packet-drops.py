#!/usr/bin/env python3
"""af-packet-drops.py PID [LABEL]: the kernel's own counters of every
AF_PACKET socket a process holds, i.e. what DPDK's net_af_packet (22.11)
does not report: frames that reached the socket, and frames the kernel
dropped because the socket's receive ring was full.

Prints one line per socket:
    afpacket LABEL iface=in0 packets=N drops=M

The sockets are borrowed with pidfd_getfd (Linux 5.6, root) and read with
getsockopt(PACKET_STATISTICS), which also resets the kernel's counters:
read once, at the end of a run, while the process still runs.
"""

import ctypes
import os
import socket
import struct
import sys

SYS_PIDFD_OPEN = 434
SYS_PIDFD_GETFD = 438
SOL_PACKET = 263
PACKET_STATISTICS = 6

libc = ctypes.CDLL(None, use_errno=True)


def syscall(nr, *args):
    ret = libc.syscall(nr, *args)
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return ret


def packet_inodes(pid):
    """Inodes of the AF_PACKET sockets in the process's network namespace."""
    with open(f"/proc/{pid}/net/packet") as f:
        next(f)
        return {int(line.split()[8]) for line in f if line.strip()}


def packet_fds(pid):
    inodes = packet_inodes(pid)
    for name in sorted(os.listdir(f"/proc/{pid}/fd"), key=int):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:
            continue
        if target.startswith("socket:[") and int(target[8:-1]) in inodes:
            yield int(name)


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    pid = int(sys.argv[1])
    label = sys.argv[2] if len(sys.argv) == 3 else str(pid)
    pidfd = syscall(SYS_PIDFD_OPEN, pid, 0)
    found = 0
    for fd in packet_fds(pid):
        local = syscall(SYS_PIDFD_GETFD, pidfd, fd, 0)
        sock = socket.socket(fileno=local)
        try:
            iface = sock.getsockname()[0]
            # struct tpacket_stats (TPACKET_V2, as net_af_packet uses):
            # packets (drops included), drops.
            packets, drops = struct.unpack("II", sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
        finally:
            sock.close()
        print(f"afpacket {label} iface={iface} packets={packets} drops={drops}")
        found += 1
    os.close(pidfd)
    if found == 0:
        sys.exit(f"af-packet-drops: process {pid} holds no AF_PACKET socket")


if __name__ == "__main__":
    main()
