"""InfluxDB series store: line protocol from the columnar batches, buffered through outages."""

from meterguard.stores.influx.store import InfluxCounters, InfluxSeriesStore

__all__ = ["InfluxCounters", "InfluxSeriesStore"]
