//! End-to-end tests of vow-runtime over real guest components.
//!
//! One test binary (link time); modules by concern. Guests are built from
//! `tests/guests` and `guest-examples/rust` on first use.

mod support;

mod capabilities;
mod components;
mod compose;
mod durability;
mod host_api;
mod isolation;
mod limits;
mod promises;
mod scale;
mod settlement;
mod workers;
