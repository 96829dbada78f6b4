//! The engine's integration tests, one test binary: the golden results (`golden`) and the
//! property tests (`props`). A test's name is its module path
//! (`cargo test -p pd-engine --test it golden::`).

mod golden;
mod props;
