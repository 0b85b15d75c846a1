"""One guest: QEMU's command line, the machine behind it (QEMU directly or libvirt), its agent and console."""
