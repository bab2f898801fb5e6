"""The composition root: the service, the `meterguard` command, the demo, replay and evaluate."""
