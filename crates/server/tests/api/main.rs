//! The HTTP API over real guest components: one test binary, a module per
//! resource.

mod components;
mod invoke;
mod json;
mod links;
mod metrics;
mod oplog;
mod promises;
mod properties;
mod rejections;
mod serve;
mod support;
mod transport;
mod typed;
mod ui;
mod workers;
