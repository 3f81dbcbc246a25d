//! The dialect's tests: one binary.

mod corpus;
mod values;
