//! End-to-end tests: the local stack in-process, driven over real HTTP with signed requests.
//! One test binary, so the workspace is linked once.

mod bad_input;
mod common;
mod exports;
mod lifecycle;
mod security;
