//! End-to-end tests: the local stack in-process, driven over real HTTP with signed requests
//! (also by the Postman collection through newman); the AWS functions against moto and the
//! project's Data API endpoint (`aws`); the web console in headless Chromium (`console`);
//! the API against its OpenAPI contract, fuzzed by schemathesis (`contract`); and the SAM
//! template's checks (`template`). One test binary, so the workspace is linked once.

mod access;
mod admission;
mod aws;
mod bad_input;
mod browser;
mod chaos;
mod cli;
mod common;
mod console;
mod contract;
mod disk;
mod exports;
mod lifecycle;
mod lookups;
mod own_catalogue;
mod postman;
mod quotas;
mod resume;
mod security;
mod subscriptions;
mod sweep;
mod template;
mod wait;
