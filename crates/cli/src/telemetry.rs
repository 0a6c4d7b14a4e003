//! Where logs and spans go: log lines to stderr (so they never mix with
//! results on stdout), as text or as JSON, and,
//! in a build with the `otlp` feature, spans to an OpenTelemetry collector
//! (`vow serve --otlp-endpoint`).
//!
//! Each destination has its own filter, so `-v` / `RUST_LOG` choose what
//! is logged without changing what is exported (`--otlp-filter`). A span
//! or event that no destination wants is not even created: the runtime's
//! host-call spans cost nothing until asked for (see
//! `vow_runtime::trace`).

#[cfg(feature = "otlp")]
mod otlp;

use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::OtlpArgs;

/// What `--otlp-filter` is when not given: each invocation's span, the
/// HTTP requests' spans, and warnings, but not the spans of host calls.
pub(crate) const DEFAULT_OTLP_FILTER: &str = "warn,vow_runtime=info,vow_server=info";

/// How log lines are written (`--log-format`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// One line a record, for people
    #[default]
    Text,
    /// One JSON object a line, with the record's spans and their fields,
    /// for log collectors
    Json,
}

/// What must be flushed before the process exits.
pub(crate) struct Telemetry {
    #[cfg(feature = "otlp")]
    otlp: Option<otlp::Exporter>,
}

impl Telemetry {
    /// Exports the spans still buffered, waiting at most the exporter's
    /// timeout. Call it outside the tokio runtime, which must still be
    /// running: the export is a task of it.
    pub(crate) fn shutdown(self) {
        #[cfg(feature = "otlp")]
        if let Some(otlp) = self.otlp {
            otlp.shutdown();
        }
    }
}

/// Installs the process's subscriber: log lines at `-v`'s level (or
/// `RUST_LOG`'s) in `format`, and, when `otlp` names an endpoint, the span
/// export. Call it inside the tokio runtime.
pub(crate) fn init(
    verbose: u8,
    format: LogFormat,
    otlp: Option<&OtlpArgs>,
) -> anyhow::Result<Telemetry> {
    let logs = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .boxed(),
    };
    let mut layers = vec![logs.with_filter(log_filter(verbose)).boxed()];
    let (spans, telemetry) = spans(otlp)?;
    layers.extend(spans);
    tracing_subscriber::registry()
        .with(layers)
        .try_init()
        .map_err(|e| anyhow::anyhow!("cannot set up logging: {e}"))?;
    Ok(telemetry)
}

/// A layer of the process's subscriber.
type BoxedLayer = Box<dyn tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync>;

/// The span export `otlp` asks for, if any.
#[cfg(feature = "otlp")]
fn spans(otlp: Option<&OtlpArgs>) -> anyhow::Result<(Option<BoxedLayer>, Telemetry)> {
    let Some((endpoint, args)) = otlp.and_then(|args| Some((args.otlp_endpoint.as_deref()?, args)))
    else {
        return Ok((None, Telemetry { otlp: None }));
    };
    let filter = EnvFilter::try_new(&args.otlp_filter).map_err(|e| {
        anyhow::anyhow!("--otlp-filter {:?} is not a filter: {e}", args.otlp_filter)
    })?;
    let (layer, exporter) = otlp::layer(endpoint)?;
    Ok((
        Some(layer.with_filter(filter).boxed()),
        Telemetry {
            otlp: Some(exporter),
        },
    ))
}

/// Without the `otlp` feature there is no span export to ask for.
#[cfg(not(feature = "otlp"))]
fn spans(otlp: Option<&OtlpArgs>) -> anyhow::Result<(Option<BoxedLayer>, Telemetry)> {
    if otlp.is_some_and(|args| args.otlp_endpoint.is_some()) {
        anyhow::bail!(
            "--otlp-endpoint: this vow was built without OTLP export; build it with \
             `cargo install --path crates/cli --features otlp`"
        );
    }
    Ok((None, Telemetry {}))
}

/// `RUST_LOG` when set, else the level `-v` counts.
fn log_filter(verbose: u8) -> EnvFilter {
    match std::env::var("RUST_LOG") {
        Ok(filter) if !filter.is_empty() => EnvFilter::new(filter),
        _ => EnvFilter::new(match verbose {
            0 => "warn",
            1 => "warn,vow=info,vow_runtime=info,vow_server=info",
            2 => "info,vow=debug,vow_runtime=debug,vow_server=debug",
            _ => "trace",
        }),
    }
}
