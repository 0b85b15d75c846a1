"""Topologies: VMs, containers and the VXLAN overlay, and the host fabric (netns, bridge, taps) that joins them."""
