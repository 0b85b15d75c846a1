"""Sockets in another network namespace, without moving the whole process.

setns(2) changes the namespace of the calling thread only, and a socket
keeps the namespace it was created in. So a short-lived thread enters the
namespace, creates the socket and ends; the socket then works from any
thread, and the process itself never leaves its own namespace.
"""

from __future__ import annotations

import ctypes
import os
import socket
import threading

from .errors import FabricError

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _in_netns(netns: str, make):
    """make() called on a short-lived thread inside /run/netns/NETNS; its result or its exception."""
    result: list = []

    def run() -> None:
        try:
            fd = os.open(f"/run/netns/{netns}", os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            result.append(FabricError(f"netns {netns}: cannot open: {exc.strerror}"))
            return
        try:
            if _libc.setns(fd, CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                result.append(FabricError(f"netns {netns}: setns failed: {os.strerror(err)}"))
                return
            result.append(make())
        except BaseException as exc:  # handed to the caller's thread
            result.append(exc)
        finally:
            os.close(fd)

    worker = threading.Thread(target=run, name=f"netns-{netns}")
    worker.start()
    worker.join()
    if isinstance(result[0], BaseException):
        raise result[0]
    return result[0]


def socket_in(netns: str, family: int, kind: int, proto: int = 0) -> socket.socket:
    """A socket created inside /run/netns/NETNS."""
    return _in_netns(netns, lambda: socket.socket(family, kind, proto))


def proc_net_fd(netns: str, name: str) -> int:
    """A read-only descriptor of /proc/net/NAME as NETNS sees it; pread(fd, n, 0) re-reads it.

    /proc/thread-self/net follows the opening thread's namespace, and an open
    file keeps the namespace it was opened in: the same trick as socket_in.
    """
    return _in_netns(netns, lambda: os.open(f"/proc/thread-self/net/{name}", os.O_RDONLY | os.O_CLOEXEC))


def sending_socket(netns: str, ifname: str) -> socket.socket:
    """A packet socket that sends whole frames on ifname and receives none.

    Bound with protocol 0, it registers no receive hook, so the kernel never
    queues a copy of the port's traffic to it (a socket bound to ETH_P_IP
    would take a copy of every frame until its buffer filled, for nothing);
    the kernel reads each frame's protocol from its Ethernet header.
    """
    sock = socket_in(netns, socket.AF_PACKET, socket.SOCK_RAW, 0)
    try:
        sock.bind((ifname, 0))
    except OSError as exc:
        sock.close()
        raise FabricError(f"netns {netns}: cannot bind a packet socket to {ifname}: {exc.strerror}") from None
    return sock


def interface_mac(netns: str, ifname: str) -> str:
    """An interface's MAC address, read through a socket in its namespace."""
    import fcntl
    import struct

    sock = socket_in(netns, socket.AF_INET, socket.SOCK_DGRAM)
    try:
        raw = fcntl.ioctl(sock.fileno(), 0x8927, struct.pack("256s", ifname.encode()[:15]))  # SIOCGIFHWADDR
    except OSError as exc:
        raise FabricError(f"netns {netns}: no interface {ifname}: {exc.strerror}") from None
    finally:
        sock.close()
    return ":".join(f"{b:02x}" for b in raw[18:24])
