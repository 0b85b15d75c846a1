"""PRISM testbed: build kernels and guest images, boot QEMU topologies, measure."""

__version__ = "0.1.0"
