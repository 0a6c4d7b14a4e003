//! The HTTP API over real guest components: one test binary, a module per
//! resource.

mod components;
mod invoke;
mod json;
mod oplog;
mod promises;
mod rejections;
mod serve;
mod support;
mod typed;
mod workers;
