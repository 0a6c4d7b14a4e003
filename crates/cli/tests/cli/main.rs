//! End-to-end tests of the `vow` binary: each test runs the real command as
//! a subprocess against guest components built from `guest-examples/`.
//!
//! One test binary (this one) keeps link time down; the modules group the
//! tests by command.

mod cluster;
mod compose;
mod durability;
mod faults;
mod golem;
mod links;
mod openapi;
mod python;
mod python_promises;
mod run;
mod serve;
mod support;
mod telemetry;
mod ui;
mod watch;
