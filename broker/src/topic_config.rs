//! Per-topic configs by Kafka's names: which exist, and what values each accepts.
