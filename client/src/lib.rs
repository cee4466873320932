//! The Rust client for Weir: producer, consumer (with groups) and admin, over the gRPC API.
//!
//! Nothing is here yet: the client arrives with the data path.
