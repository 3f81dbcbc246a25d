//! End-to-end tests: the local stack in-process, driven over real HTTP with signed requests;
//! and the AWS functions against moto and the project's Data API endpoint (`aws`).
//! One test binary, so the workspace is linked once.

mod aws;
mod bad_input;
mod common;
mod exports;
mod lifecycle;
mod security;
mod sweep;
