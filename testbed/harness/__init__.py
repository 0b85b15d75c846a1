"""What drives a run end to end: the pytest plugin and its fixtures, the experiment, the host doctor."""
