//! Multi-broker integration tests, fault tests and real Kafka client compatibility tests.
//!
//! Empty until there is a broker to run: storage tests live beside the storage code.
