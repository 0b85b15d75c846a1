"""Traffic on a deployment: mixes, probes and their reflectors, bulk floods, stage counters, PRISM's knobs."""
