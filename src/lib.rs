//! The `redshift-export` command: a SigV4 client for the export API, the local stack's
//! launcher, the demo and the benchmark.

pub mod bench;
pub mod bench_lambda;
pub mod client;
pub mod demo;
pub mod unpack;
