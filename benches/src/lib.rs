//! Weir's benchmarks live in `benches/`; run them with `cargo bench -p weir-benches`:
//! criterion micro benchmarks (`storage`, `controller`), and `data_path` (a whole node) and
//! `replication` (a three-node cluster), driven by real Kafka clients, which each print one
//! table.
