//! # exactly-bench
//!
//! The benchmarks of `exactly` live in `benches/` (run them with
//! `cargo bench -p exactly-bench --bench NAME`); the Kafka Streams baseline they compare
//! against is the Maven project in `kstreams/` (built and run by `scripts/kstreams`). This
//! library is empty: the package exists so that the benches and their plotting libraries
//! stay out of `cargo test --workspace`.
