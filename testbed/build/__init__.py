"""Artifacts a run boots: kernels (from a tarball or a local tree, with a patch series) and guest images."""
