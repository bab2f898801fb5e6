"""meterguard: real-time revenue-protection monitoring of electricity-meter telemetry."""

__version__ = "0.1.0"
