//! End-to-end tests: the local stack in-process, driven over real HTTP with signed requests
//! (also by the Postman collection through newman); the AWS functions against moto and the
//! project's Data API endpoint (`aws`); the web console in headless Chromium (`console`); and the SAM template's checks (`template`).
//! One test binary, so the workspace is linked once.

mod aws;
mod bad_input;
mod browser;
mod cli;
mod common;
mod console;
mod exports;
mod lifecycle;
mod lookups;
mod postman;
mod resume;
mod security;
mod sweep;
mod template;
