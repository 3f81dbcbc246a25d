//! The core's own tests: the services over in-memory fakes on a manual clock (every race and
//! timeout below runs in milliseconds), and property tests of parameter rendering.

mod fakes;
mod packaging;
mod rendering;
mod services;
