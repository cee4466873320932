//! Weir's benchmarks live in `benches/`; run them with `cargo bench -p weir-benches`:
//! criterion micro benchmarks (`storage`, `controller`) and `data_path`, a whole node driven
//! by real Kafka clients, which prints one table.
