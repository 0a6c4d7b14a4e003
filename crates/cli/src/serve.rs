//! `vow serve`: the HTTP API of `vow-server` on a socket.
//!
//! It binds first (so a taken port fails before any slow compilation),
//! compiles the preloaded components, prints what they export with curl
//! lines to try, and only then prints `listening on http://ADDR` with the
//! address actually bound, which is what scripts and tests wait for.

use std::time::Duration;

use anyhow::{Context as _, bail};
use reqwest::Url;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use vow_runtime::{ComponentInfo, Executor, Type};
use vow_server::ServerConfig;

use crate::output;
use crate::{DEFAULT_SERVER, ServeArgs, local};

mod cluster;
mod demo;

pub(crate) async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    if args.auth_token.is_none()
        && !args.addr.ip().is_loopback()
        && !args.unauthenticated_on_network
    {
        bail!(
            "refusing to serve the API without a token on {}, which is reachable from other machines: \
             set one with --auth-token TOKEN or VOW_AUTH_TOKEN (clients then pass --token or set \
             VOW_AUTH_TOKEN), or listen on 127.0.0.1; --unauthenticated-on-network serves it open anyway",
            args.addr
        );
    }
    let config = ServerConfig {
        max_body_bytes: args.max_body,
        max_component_bytes: args.max_component,
        auth_token: args.auth_token.clone(),
        body_timeout: local::seconds("--body-timeout", args.body_timeout)?
            .context("--body-timeout must be more than 0 seconds")?,
    };
    // A payload travels as a JSON array of numbers, up to four characters
    // a byte ("255,"): a body limit below that refuses what the payload
    // limit allows, with a 413 that names the body, not the payload.
    let payload_json = args
        .limits
        .max_payload
        .saturating_mul(4)
        .saturating_add(1024);
    if args.max_body < payload_json {
        output::error_line(&format!(
            "warning: --max-body {} is too small for a completion of --max-payload {} bytes \
             sent as JSON (up to {payload_json} bytes); raise --max-body",
            args.max_body, args.limits.max_payload
        ));
    }
    let options = serve_options(&args)?;
    let listener = TcpListener::bind(args.addr)
        .await
        .with_context(|| format!("cannot listen on {}", args.addr))?;
    let addr = listener
        .local_addr()
        .context("cannot read the bound address")?;
    let scheme = if options.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let base = format!("{scheme}://{addr}");
    let public_url = args.public_url.clone().unwrap_or_else(|| base.clone());
    if args.cluster.node_id.is_some() {
        return cluster::serve(&args, config, options, listener, &base, &public_url).await;
    }
    let (executor, taken_over) = executor(&args, &public_url).await?;
    let mut components = Vec::new();
    for path in &args.components {
        components.push(local::load(&executor, path).await?);
    }
    for text in introduction(&executor, &components, &base) {
        output::line(&text)?;
    }
    output::line(&format!("listening on {base}"))?;
    if args.demo {
        demo::start(&executor, &components, &base).await?;
    }

    let router = vow_server::router(executor, config);
    // A node whose database another node took over stops (as after the
    // first Ctrl-C) and exits with an error, so that whatever supervises
    // it sees it go.
    let (lost_tx, lost_rx) = tokio::sync::oneshot::channel();
    let stop = async move {
        tokio::select! {
            () = shutdown() => {}
            holder = taken_over => {
                output::error_line(&format!(
                    "another node took the database over ({holder}): this node writes nothing more and stops"
                ));
                let _ = lost_tx.send(holder);
            }
        }
    };
    vow_server::serve_with(listener, router, stop, options)
        .await
        .with_context(|| format!("serving on {addr} failed"))?;
    if let Ok(holder) = lost_rx.await {
        bail!("stopped: the database was taken over by {holder}");
    }
    output::error_line("stopped");
    Ok(())
}

/// Resolves when another node takes the store over; never for a store
/// that cannot be taken (SQLite, memory).
type TakenOver = std::pin::Pin<Box<dyn std::future::Future<Output = String> + Send>>;

/// How connections are served: TLS, the connection cap, the header
/// deadline.
fn serve_options(args: &ServeArgs) -> anyhow::Result<vow_server::ServeOptions> {
    if args.max_connections == 0 {
        bail!("--max-connections must be 1 or more");
    }
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(
            vow_server::tls_config(cert, key)
                .context("cannot set up TLS (--tls-cert, --tls-key)")?,
        ),
        _ => None,
    };
    Ok(vow_server::ServeOptions {
        tls,
        max_connections: args.max_connections,
        header_timeout: local::seconds("--header-timeout", args.header_timeout)?
            .context("--header-timeout must be more than 0 seconds")?,
        ..vow_server::ServeOptions::default()
    })
}

/// The keys that sign completion links: the file given, the data
/// directory's (the runtime's default), or one kept in memory.
fn link_keys(
    args: &ServeArgs,
    mut builder: vow_runtime::ExecutorBuilder,
) -> anyhow::Result<vow_runtime::ExecutorBuilder> {
    if let Some(path) = &args.link_keys {
        let keys = vow_runtime::links::LinkKeys::open(path)
            .context("cannot read the completion link keys (--link-keys)")?;
        builder = builder.link_keys(keys);
    } else if args.in_memory || args.database_url.is_some() {
        output::error_line(
            "completion links are signed with a key kept in memory: they stop working at restart \
             (--link-keys FILE keeps the key)",
        );
    }
    Ok(builder)
}

/// Opens the executor on the data directory (or in memory, or on the
/// database, when asked), with what says that the store was taken over.
async fn executor(args: &ServeArgs, public_url: &str) -> anyhow::Result<(Executor, TakenOver)> {
    let never: TakenOver = Box::pin(std::future::pending());
    let builder = builder(args, public_url)?;
    if args.in_memory {
        output::error_line("keeping everything in memory (--in-memory): a restart loses it");
        return Ok((builder.build().context("cannot set up the runtime")?, never));
    }
    if let Some(url) = &args.database_url {
        let store = vow_store_postgres::PostgresStorage::connect(url, Default::default()).await?;
        output::error_line(&format!(
            "database: {}",
            vow_runtime::vow_store::Storage::location(&store)
        ));
        let store = std::sync::Arc::new(store);
        let watched = std::sync::Arc::clone(&store);
        let taken_over: TakenOver = Box::pin(async move { watched.taken_over().await });
        let executor = builder
            .storage(store)
            .open()
            .await
            .context("cannot open the database")?;
        return Ok((executor, taken_over));
    }
    let Some(dir) = args.data_dir.clone().or_else(local::default_data_dir) else {
        anyhow::bail!(
            "no data directory: HOME is not set; pass --data-dir DIR (or VOW_DATA_DIR), or --in-memory"
        );
    };
    output::error_line(&format!("data directory: {}", dir.display()));
    let executor = builder
        .data_dir(&dir)
        .open()
        .await
        .with_context(|| format!("cannot open the data directory {}", dir.display()))?;
    Ok((executor, never))
}

/// The executor's settings from the flags, without its store.
fn builder(args: &ServeArgs, public_url: &str) -> anyhow::Result<vow_runtime::ExecutorBuilder> {
    if !args.evict_after.is_finite() || args.evict_after < 0.0 {
        anyhow::bail!("--evict-after must be a number of seconds, 0 or more");
    }
    if args.max_resident == 0 {
        anyhow::bail!("--max-resident must be 1 or more");
    }
    let mut builder = local::builder(&args.cache)
        .evict_after(Some(Duration::from_secs_f64(args.evict_after)))
        .max_resident(args.max_resident)
        .max_queued(args.max_queued)
        .snapshot_every(Some(args.snapshot_every))
        .metrics(!args.no_metrics);
    if args.max_workers == 0 || args.max_workers_per_component == 0 {
        anyhow::bail!("--max-workers and --max-workers-per-component must be 1 or more");
    }
    builder = local::limit(builder, &args.limits)?
        .max_workers(args.max_workers)
        .max_workers_per_component(args.max_workers_per_component);
    if let Some(timeout) = args.invocation_timeout {
        builder = builder.invocation_timeout(local::seconds("--invocation-timeout", timeout)?);
    }
    if args.allocator == crate::AllocatorArg::Pooling {
        builder = builder.pooling_sized_for_resident();
    }
    link_keys(args, builder.public_url(public_url))
}

/// The first SIGINT/SIGTERM starts a graceful shutdown; a second one ends
/// the process at once, for when requests parked on promises hold it up.
async fn shutdown() {
    vow_server::shutdown_signal().await;
    output::error_line("shutting down; press Ctrl-C again to stop at once");
    tokio::spawn(async {
        vow_server::shutdown_signal().await;
        std::process::exit(130);
    });
}

/// What was loaded and how to try it, as lines to print.
fn introduction(executor: &Executor, components: &[ComponentInfo], base: &str) -> Vec<String> {
    let server_flag = if base == DEFAULT_SERVER {
        String::new()
    } else {
        format!(" --server {base}")
    };
    let mut lines = Vec::new();
    for component in components {
        lines.push(format!(
            "component {} {} ({})",
            component.name,
            component.id,
            output::size(component.size as u64)
        ));
        for export in &component.exports {
            lines.push(format!("  {}", output::signature(export)));
        }
    }
    lines.push(String::new());
    let Some(component) = components.first() else {
        lines.push("no components yet; upload one with".to_owned());
        lines.push(format!("  vow component add FILE.wasm{server_flag}"));
        lines.push(format!(
            "  curl --data-binary @FILE.wasm '{base}/v1/components?name=NAME'"
        ));
        lines.push(String::new());
        return lines;
    };
    let cid = component.id.to_string();
    let workers = format!("{base}/v1/components/{cid}/workers");
    lines.push(format!("try it (worker \"w1\" of {}):", component.name));
    lines.push(format!(
        "  curl -X POST {workers} -H 'content-type: application/json' -d '{{\"name\":\"w1\"}}'"
    ));
    for export in &component.exports {
        let params = executor
            .function_type(component.id, &export.name)
            .map(|ty| ty.params.iter().map(|(_, t)| sample(t)).collect::<Vec<_>>())
            .unwrap_or_default();
        let mut url = match Url::parse(&format!("{workers}/w1/invoke-and-await")) {
            Ok(url) => url,
            Err(_) => continue,
        };
        url.query_pairs_mut().append_pair("function", &export.name);
        lines.push(format!(
            "  curl -X POST '{url}' -H 'content-type: application/json' -d '{}'",
            json!({ "params_json": params })
        ));
    }
    lines.push(format!("  curl '{base}/v1/promises?status=pending'"));
    lines.push(format!(
        "  curl -X POST {workers}/w1/complete -H 'content-type: application/json' \
         -d '{{\"oplogIdx\":OPLOG-INDEX,\"data\":[111,107]}}'"
    ));
    lines.push("or with the CLI:".to_owned());
    lines.push(format!("  vow worker start {cid} w1{server_flag}"));
    if let Some(export) = component.exports.first() {
        lines.push(format!(
            "  vow worker invoke {cid} w1 {} ARGS... --no-wait{server_flag}",
            export.name
        ));
    }
    lines.push(format!("  vow promise list --status pending{server_flag}"));
    lines.push(format!(
        "  vow promise complete PROMISE-ID --data ok{server_flag}"
    ));
    lines.push(String::new());
    lines
}

/// A placeholder value of the type in Golem's JSON encoding, for examples.
fn sample(ty: &Type) -> Value {
    match ty {
        Type::Bool => json!(false),
        Type::S8
        | Type::U8
        | Type::S16
        | Type::U16
        | Type::S32
        | Type::U32
        | Type::S64
        | Type::U64
        | Type::Float32
        | Type::Float64 => json!(0),
        Type::Char => json!("a"),
        Type::String => json!("text"),
        Type::Record(record) => Value::Object(
            record
                .fields()
                .map(|field| (field.name.to_owned(), sample(&field.ty)))
                .collect(),
        ),
        Type::Tuple(tuple) => Value::Array(tuple.types().map(|t| sample(&t)).collect()),
        Type::Variant(variant) => match variant.cases().next() {
            Some(case) => match &case.ty {
                Some(payload) => json!({ case.name: sample(payload) }),
                None => json!(case.name),
            },
            None => Value::Null,
        },
        Type::Enum(cases) => cases.names().next().map_or(Value::Null, |name| json!(name)),
        Type::Result(result) => json!({ "ok": result.ok().map_or(Value::Null, |t| sample(&t)) }),
        Type::List(_) | Type::Flags(_) => json!([]),
        _ => Value::Null,
    }
}
