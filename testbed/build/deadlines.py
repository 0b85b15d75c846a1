"""How long each command of the build stage may run before it is killed, in seconds.

Why deadlines at all: a build command that hangs (a stalled mirror, a tool
waiting on a lock) otherwise holds a CI run until its job limit, with nothing
saying which command hung. Why these sizes: each is many times what the
command takes on this project's 2-core hosts, so a slow or loaded host never
meets one, and a hang is still named within a bounded time. All are
generous; none is infinite.
"""

from __future__ import annotations

MINUTE = 60.0

# Small queries: they read a file or print a version; seconds even on a loaded host.
TOOL_VERSION = 30.0  # gcc --version, ld --version
READELF = 30.0  # one helper binary's version needs
DPKG_QUERY = 60.0  # one root's dpkg status
BUSYBOX_LIST = 30.0  # busybox --list
KERNELRELEASE = 5 * MINUTE  # make -s kernelrelease: make reads the Makefiles, may re-sync the config

# The kernel source: a linux-6.1 .tar.xz unpacks in 30-60 s here; a slow disk or a busy
# host takes a few minutes.
TAR_EXTRACT = 20 * MINUTE
COPY_TREE = 15 * MINUTE  # cp -al of a kernel tree (~75k links), cp -a of a guest root (~140 MB)
PATCH = 2 * MINUTE  # patch --dry-run, then patch: one file of the series
CHECKPATCH = 5 * MINUTE  # checkpatch.pl on one patch

# make: a config target builds kconfig's `conf` first (seconds to a minute); a bzImage from
# nothing took 16 min on a 2-core host with a cold ccache (README), and a slower host without
# ccache several times that.
CONFIGURE = 15 * MINUTE  # make tinyconfig/defconfig/olddefconfig, merge_config.sh
KERNEL_COMPILE = 4 * 60 * MINUTE  # make bzImage, or the directories of a patch prefix

# The guest image: mmdebstrap downloads ~60 MB and installs ~130 packages (the toolchain
# for the guest's programs included, then purged): 2 min here, longer from a slow mirror.
MMDEBSTRAP = 60 * MINUTE
MKE2FS = 15 * MINUTE  # writes a ~200 MB ext4 file from a directory
