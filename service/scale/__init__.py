"""Partitioned mode: a stateless ingest tier and detector workers joined by NATS JetStream."""
