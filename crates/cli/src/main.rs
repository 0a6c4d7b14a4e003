//! The `vow` command: runs WebAssembly components that import
//! `golem:api/host@1.1.0`, serves Vow's HTTP API, and talks to a running
//! server.
//!
//! This file holds the command-line tree and the top-level error handling;
//! each command lives in its own module:
//!
//! - `run`: `vow run`, one invocation in this process,
//! - `serve`: `vow serve`, the HTTP API,
//! - `remote`: `vow component|worker|promise ...`, through `client`,
//! - `local`: building an executor and loading components, shared by the two
//!   in-process commands,
//! - `output`: tables, signatures and writing to stdout/stderr,
//! - `telemetry`: log lines and span export,
//! - `watch`: `vow promise list --watch`.

mod client;
mod local;
mod output;
mod remote;
mod run;
mod serve;
mod telemetry;
mod watch;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};
use vow_server::ServerConfig;

/// Where the client commands look for a server when neither `--server` nor
/// `VOW_SERVER` says otherwise; the same address `vow serve` listens on.
const DEFAULT_SERVER: &str = "http://127.0.0.1:9881";

const EXAMPLES: &str = "\
Examples:
  Run one function in this process and answer its promise from the keyboard:
    vow run approval.wasm --invoke 'request-approval(\"deploy\")'
  See what a component exports:
    vow run approval.wasm --list
  Serve the HTTP API, then drive it from another terminal:
    vow serve --component approval.wasm
    vow worker start <COMPONENT-ID> approver-1
    vow worker invoke <COMPONENT-ID> approver-1 request-approval '\"deploy\"' --no-wait
    vow promise list --status pending
    vow promise complete <PROMISE-ID> --data approved

Exit status: 0 on success, 1 on an error, 2 on a malformed command line.
Log output goes to stderr: -v, -vv, -vvv, or RUST_LOG=<filter> for full control;
--log-format json writes one JSON object a line.";

/// Runs WebAssembly components that use Golem's durable promises
/// (golem:api/host@1.1.0).
///
/// A component's worker can create a promise, hand its id to someone and wait
/// in `await-promise` until that someone completes it. `vow run` does this in
/// one process; `vow serve` offers it over HTTP, and the `component`, `worker`
/// and `promise` commands are a client for that server.
#[derive(Debug, Parser)]
#[command(name = "vow", version, after_help = EXAMPLES)]
struct Cli {
    /// Log more to stderr (-v: info, -vv: debug, -vvv: trace); RUST_LOG overrides
    #[arg(short, long, action = ArgAction::Count, global = true)]
    verbose: u8,

    /// How log lines are written to stderr
    #[arg(
        long,
        value_enum,
        global = true,
        env = "VOW_LOG_FORMAT",
        default_value_t = telemetry::LogFormat::Text
    )]
    log_format: telemetry::LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one function of a component in this process and print its result
    Run(RunArgs),
    /// Serve the HTTP API (see docs/rest-api.md) until Ctrl-C or SIGTERM
    Serve(Box<ServeArgs>),
    /// Upload and list components on a server
    Component {
        #[command(flatten)]
        server: ServerArgs,
        #[command(subcommand)]
        command: ComponentCommand,
    },
    /// Start, invoke, inspect and delete workers on a server
    Worker {
        #[command(flatten)]
        server: ServerArgs,
        #[command(subcommand)]
        command: WorkerCommand,
    },
    /// List and complete promises on a server
    Promise {
        #[command(flatten)]
        server: ServerArgs,
        #[command(subcommand)]
        command: PromiseCommand,
    },
    /// List the nodes of a cluster (vow serve --node-id)
    Node {
        #[command(flatten)]
        server: ServerArgs,
        #[command(subcommand)]
        command: NodeCommand,
    },
    /// Rotate and retire the keys that sign completion links
    LinkKeys {
        #[command(flatten)]
        place: LinkKeysArgs,
        #[command(subcommand)]
        command: LinkKeysCommand,
    },
}

/// Arguments of `vow run`.
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("action").required(true))]
struct RunArgs {
    /// The component file (.wasm)
    component: PathBuf,

    /// The call to make: an export's name and its arguments in WAVE text,
    /// e.g. 'run()' or 'request-approval("deploy")'
    ///
    /// Arguments are parsed against the export's parameter types: strings in
    /// double quotes, records as {field: value}, lists as [a, b], variants and
    /// enums by case name, options as some(x) / none, results as ok(x) / err(x).
    #[arg(long, value_name = "CALL", group = "action")]
    invoke: Option<String>,

    /// Print the component's exports with their WIT signatures and exit
    #[arg(long, group = "action")]
    list: bool,

    /// With --list: print the exports as JSON
    #[arg(long, requires = "list")]
    json: bool,

    /// Name of the worker that runs the call (it appears in promise ids)
    #[arg(long, value_name = "NAME", default_value = "main")]
    worker: String,

    /// A command-line argument for the guest (repeat for more)
    #[arg(long = "arg", value_name = "ARG", allow_hyphen_values = true)]
    args: Vec<String>,

    /// An environment variable for the guest (repeat for more)
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    env: Vec<(String, String)>,

    #[command(flatten)]
    limits: GuestLimits,

    #[command(flatten)]
    cache: CacheArgs,
}

/// What one worker may do, for `vow run` and `vow serve`.
#[derive(Debug, Args)]
struct GuestLimits {
    /// Most pending promises one worker may hold; creating one more traps
    /// its invocation
    #[arg(long, value_name = "COUNT", default_value_t = vow_runtime::DEFAULT_MAX_OPEN_PROMISES)]
    max_open_promises: usize,

    /// Largest promise payload accepted, in bytes (a rejection counts its
    /// message and data): a larger completion gets 413, a guest's traps its
    /// invocation, and a `when`/`then` result that large rejects its promise
    #[arg(long, value_name = "BYTES", default_value_t = vow_runtime::DEFAULT_MAX_PAYLOAD)]
    max_payload: usize,

    /// Seconds a guest may run in one invocation without returning, time
    /// parked on a promise not counted; past it the invocation traps and
    /// the worker fails (0: no limit)
    #[arg(long, value_name = "SECONDS", default_value_t = vow_runtime::DEFAULT_MAX_RUN_TIME.as_secs_f64())]
    max_run_time: f64,
}

/// Arguments of `vow serve`.
#[derive(Debug, Args)]
struct ServeArgs {
    /// Address to listen on; port 0 picks a free port (the real address is printed)
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:9881")]
    addr: SocketAddr,

    /// A component file to load at start (repeat for more); more can be
    /// uploaded later with `vow component add`
    #[arg(long = "component", value_name = "FILE")]
    components: Vec<PathBuf>,

    /// Largest accepted JSON request body, in bytes (larger ones get 413)
    #[arg(long, value_name = "BYTES", default_value_t = ServerConfig::default().max_body_bytes)]
    max_body: usize,

    /// Largest accepted component upload, in bytes
    #[arg(long, value_name = "BYTES", default_value_t = ServerConfig::default().max_component_bytes)]
    max_component: usize,

    /// Walk through the approval flow: start a worker of the `approval`
    /// example (which must be among --component), have it wait on a promise,
    /// and print the commands that complete it
    #[arg(long)]
    demo: bool,

    /// Directory where vow keeps components, workers, promises and results
    /// (a SQLite database), created when missing; everything there is back
    /// after a restart [default: $XDG_DATA_HOME/vow or ~/.local/share/vow]
    #[arg(
        long,
        env = "VOW_DATA_DIR",
        value_name = "DIR",
        conflicts_with_all = ["in_memory", "database_url"]
    )]
    data_dir: Option<PathBuf>,

    /// Keep state in this PostgreSQL database instead of a data directory
    /// (postgres://user:password@host:port/db); Vow creates its tables
    #[arg(
        long,
        env = "VOW_DATABASE_URL",
        value_name = "URL",
        conflicts_with = "in_memory"
    )]
    database_url: Option<String>,

    /// Keep everything in memory instead: a restart loses every worker
    #[arg(long)]
    in_memory: bool,

    /// Require `Authorization: Bearer TOKEN` on every API route (401
    /// otherwise); the CLI's client commands send it from --token or
    /// VOW_AUTH_TOKEN. Needed to listen on an address that is not loopback
    #[arg(
        long,
        env = "VOW_AUTH_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    auth_token: Option<String>,

    /// Serve the API without a token on an address other machines can
    /// reach: anyone who can connect can then run code and complete promises
    #[arg(long)]
    unauthenticated_on_network: bool,

    /// Keep no metrics and serve no GET /metrics (Prometheus' text format,
    /// behind the API token like the other routes; see docs/metrics.md)
    #[arg(long)]
    no_metrics: bool,

    /// The URL clients reach this server at, from which completion links
    /// make theirs ({URL}/v1/links/{token}) [default: http(s)://ADDR as
    /// bound]
    #[arg(long, env = "VOW_PUBLIC_URL", value_name = "URL")]
    public_url: Option<String>,

    /// The key file that signs completion links, created with one key when
    /// missing; rotate with `vow link-keys rotate` [default:
    /// DATA-DIR/link-keys; with --database-url or --in-memory a key kept in
    /// memory, so links stop working at restart]
    #[arg(long, env = "VOW_LINK_KEYS", value_name = "FILE")]
    link_keys: Option<PathBuf>,

    /// Serve HTTPS with this certificate chain (PEM, the server's
    /// certificate first); needs --tls-key
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,

    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1)
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,

    /// Most client connections served at once; more wait to be accepted
    #[arg(long, value_name = "COUNT", default_value_t = vow_server::ServeOptions::default().max_connections)]
    max_connections: usize,

    /// Seconds a client has to send a request's headers (and, over TLS, to
    /// finish the handshake); an idle connection is closed after as long
    #[arg(long, value_name = "SECONDS", default_value_t = vow_server::ServeOptions::default().header_timeout.as_secs_f64())]
    header_timeout: f64,

    /// Seconds a request body may stall between two reads before the
    /// request is answered 408
    #[arg(long, value_name = "SECONDS", default_value_t = ServerConfig::default().body_timeout.as_secs_f64())]
    body_timeout: f64,

    /// Seconds a worker parked on a promise stays in memory before it is
    /// evicted (0: as soon as it parks); its promise's completion brings it
    /// back by replay
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    evict_after: f64,

    /// Most invocations waiting in one worker's queue; past it an
    /// invocation is refused with 503 and Retry-After
    #[arg(long, value_name = "COUNT", default_value_t = vow_runtime::DEFAULT_MAX_QUEUED)]
    max_queued: usize,

    /// Most workers kept in memory; past it the least recently used idle or
    /// parked workers leave memory and come back by replay when needed
    #[arg(long, value_name = "COUNT", default_value_t = vow_runtime::DEFAULT_MAX_RESIDENT)]
    max_resident: usize,

    /// How workers get their memory: `on-demand` (mapped per worker, no
    /// fixed limits) or `pooling` (a pool sized from --max-resident,
    /// reserved at start: worker starts take half the time, but more than
    /// twice --max-resident workers running at once fail to start)
    #[arg(long, value_enum, default_value_t = AllocatorArg::OnDemand)]
    allocator: AllocatorArg,

    /// Snapshot a worker whose component exports golem:api's save-snapshot
    /// and load-snapshot after this many invocations, so replay starts from
    /// the latest snapshot (0: never)
    #[arg(long, value_name = "INVOCATIONS", default_value_t = vow_runtime::DEFAULT_SNAPSHOT_EVERY)]
    snapshot_every: u64,

    /// Most workers the server holds, in memory or not, until deleted
    /// (ephemeral ones included); past it starting one answers 403
    #[arg(long, value_name = "COUNT", default_value_t = vow_runtime::DEFAULT_MAX_WORKERS)]
    max_workers: usize,

    /// Most workers one component may have; past it starting one answers 403
    #[arg(long, value_name = "COUNT", default_value_t = vow_runtime::DEFAULT_MAX_WORKERS_PER_COMPONENT)]
    max_workers_per_component: usize,

    /// Seconds an invocation may take, waiting on promises included; past
    /// it the invocation answers 504 and the worker fails [default: no
    /// limit, so that a worker may wait on a promise for days;
    /// --max-run-time stops a guest that never returns]
    #[arg(long, value_name = "SECONDS")]
    invocation_timeout: Option<f64>,

    #[command(flatten)]
    cluster: ClusterArgs,

    #[command(flatten)]
    otlp: OtlpArgs,

    #[command(flatten)]
    limits: GuestLimits,

    #[command(flatten)]
    cache: CacheArgs,
}

/// `vow serve` as a node of a cluster (docs/cluster.md).
#[derive(Debug, Args)]
struct ClusterArgs {
    /// Run as node ID of a cluster: several nodes on one --database-url,
    /// each running the workers it owns and forwarding requests about the
    /// others' workers to their owners; the workers of a node that stops
    /// or dies are taken over by the others
    #[arg(
        long,
        env = "VOW_NODE_ID",
        value_name = "ID",
        requires = "database_url",
        conflicts_with_all = ["in_memory", "data_dir", "demo"]
    )]
    node_id: Option<String>,

    /// The URL other nodes forward requests to this node at, this node's
    /// own (not a load balancer's) [default: http(s)://ADDR as bound];
    /// needed when listening on 0.0.0.0 or ::
    #[arg(
        long,
        env = "VOW_ADVERTISE_URL",
        value_name = "URL",
        requires = "node_id"
    )]
    advertise_url: Option<String>,

    /// Seconds a node's membership lasts without renewal: when a node dies,
    /// the others take its workers over after at most this long (a node
    /// renews every quarter of it, at most every 0.5 s, and stops by itself
    /// when it could not for three quarters of it)
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 10.0,
        requires = "node_id"
    )]
    lease_ttl: f64,

    /// Trust this CA certificate (PEM; several may be in the file) for
    /// nodes served over HTTPS (--tls-cert), besides the usual roots: for
    /// nodes with a private CA or self-signed certificates
    #[arg(
        long,
        env = "VOW_CLUSTER_CA_CERT",
        value_name = "FILE",
        requires = "node_id"
    )]
    cluster_ca_cert: Option<PathBuf>,
}

/// Where `vow serve` exports spans (a build with the `otlp` feature).
#[derive(Debug, Args)]
struct OtlpArgs {
    /// Export spans over OTLP/HTTP (protobuf) to the OpenTelemetry
    /// collector at this base URL: they go to URL/v1/traces. Needs a vow
    /// built with `--features otlp` (it then also reads
    /// OTEL_EXPORTER_OTLP_ENDPOINT)
    #[arg(long, value_name = "URL")]
    #[cfg_attr(feature = "otlp", arg(env = "OTEL_EXPORTER_OTLP_ENDPOINT"))]
    otlp_endpoint: Option<String>,

    /// Which spans and events to export, in RUST_LOG's syntax, whatever is
    /// logged; `vow_runtime=debug` adds a span per host call
    #[arg(
        long,
        value_name = "FILTER",
        env = "VOW_OTLP_FILTER",
        default_value = telemetry::DEFAULT_OTLP_FILTER
    )]
    otlp_filter: String,
}

/// `vow serve --allocator`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum AllocatorArg {
    /// wasmtime's pooling allocator, sized from --max-resident
    Pooling,
    /// wasmtime's on-demand allocator
    OnDemand,
}

/// Where compiled components are cached.
#[derive(Debug, Args)]
struct CacheArgs {
    /// Directory for compiled components, so each is compiled only once
    /// [default: $XDG_CACHE_HOME/vow or ~/.cache/vow]
    #[arg(long, value_name = "DIR", conflicts_with = "no_cache")]
    cache_dir: Option<PathBuf>,

    /// Compile components every time instead of caching them
    #[arg(long)]
    no_cache: bool,
}

/// How the client commands reach the server.
#[derive(Debug, Args)]
struct ServerArgs {
    /// URL of the vow server [default: http://127.0.0.1:9881]
    // No `default_value`: clap would let the parent's default shadow a value
    // given after the subcommand, so the default is applied in `url`.
    #[arg(long, global = true, env = "VOW_SERVER", value_name = "URL")]
    server: Option<String>,

    /// The server's API token (vow serve --auth-token)
    #[arg(
        long,
        global = true,
        env = "VOW_AUTH_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,

    /// Trust this CA certificate (PEM) for an https:// server, besides the
    /// usual roots: for a server with a self-signed certificate
    #[arg(long, global = true, env = "VOW_CA_CERT", value_name = "FILE")]
    ca_cert: Option<PathBuf>,
}

impl ServerArgs {
    /// The server's URL, or the default.
    fn url(&self) -> &str {
        self.server.as_deref().unwrap_or(DEFAULT_SERVER)
    }
}

#[derive(Debug, Subcommand)]
enum NodeCommand {
    /// List the cluster's nodes: role, address, lease and load
    List {
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum ComponentCommand {
    /// Upload a component file; prints its id and exports
    Add {
        /// The component file (.wasm)
        file: PathBuf,
        /// Name to register it under [default: the file name without .wasm]
        #[arg(long)]
        name: Option<String>,
        /// Print the server's JSON answer
        #[arg(long)]
        json: bool,
    },
    /// List the server's components
    List {
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum WorkerCommand {
    /// Start a worker: a named instance of a component
    Start {
        /// Component id (from `vow component list`)
        component: String,
        /// Name of the new worker
        name: String,
        /// A command-line argument for the guest (repeat for more)
        #[arg(long = "arg", value_name = "ARG", allow_hyphen_values = true)]
        args: Vec<String>,
        /// An environment variable for the guest (repeat for more)
        #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_key_value)]
        env: Vec<(String, String)>,
        /// Print the server's JSON answer
        #[arg(long)]
        json: bool,
    },
    /// List a component's workers
    List {
        /// Component id
        component: String,
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Show one worker's status and settings
    Get {
        /// Component id
        component: String,
        /// Worker name
        name: String,
        /// Print the server's JSON answer
        #[arg(long)]
        json: bool,
    },
    /// Call an exported function and print its result (as JSON)
    Invoke(InvokeArgs),
    /// Print what a worker wrote to stdout and stderr
    Logs {
        /// Component id
        component: String,
        /// Worker name
        name: String,
        /// Print the server's JSON answer
        #[arg(long)]
        json: bool,
    },
    /// Print a worker's operation log (what it did, as replay will see it)
    Oplog {
        /// Component id
        component: String,
        /// Worker name
        name: String,
        /// First index to print
        #[arg(long, default_value_t = 1)]
        from: u64,
        /// Most entries to print (all when absent)
        #[arg(long)]
        count: Option<u64>,
        /// Print the entries as JSON lines
        #[arg(long)]
        json: bool,
    },
    /// Stop a worker's invocation in progress; it stays interrupted, running
    /// nothing, until resumed
    Interrupt {
        /// Component id
        component: String,
        /// Worker name
        name: String,
        /// Go on at once, as after a crash, instead of waiting for `resume`
        #[arg(long)]
        recover_immediately: bool,
    },
    /// Let an interrupted worker go on: its interrupted invocation runs again
    /// by replay
    Resume {
        /// Component id
        component: String,
        /// Worker name
        name: String,
    },
    /// Stop and remove a worker; promises it created are deleted
    Delete {
        /// Component id
        component: String,
        /// Worker name
        name: String,
    },
}

/// Arguments of `vow worker invoke`.
#[derive(Debug, Args)]
struct InvokeArgs {
    /// Component id
    component: String,
    /// Worker name
    name: String,
    /// The exported function, as `vow component list` shows it
    function: String,
    /// Arguments in WAVE text, one per parameter: '"text"', 42, true, [1, 2], {a: 1}
    #[arg(value_name = "ARG", allow_negative_numbers = true)]
    args: Vec<String>,
    /// Arguments as a JSON array in Golem's value encoding instead, e.g. '["deploy"]'
    #[arg(long, value_name = "JSON", conflicts_with = "args")]
    json_params: Option<String>,
    /// Queue the invocation and return at once instead of waiting for the result
    #[arg(long)]
    no_wait: bool,
    /// A key that makes repeating the request harmless: a second request
    /// with the same key on this worker runs nothing again
    #[arg(long, value_name = "KEY")]
    idempotency_key: Option<String>,
    /// Print the server's JSON answer
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum PromiseCommand {
    /// List promises, optionally only some
    List {
        /// Only promises with this status
        #[arg(long, value_enum)]
        status: Option<PromiseStatusArg>,
        /// Only promises of this component's workers
        #[arg(long, value_name = "CID")]
        component: Option<String>,
        /// Only promises of this worker (needs --component)
        #[arg(long, value_name = "NAME", requires = "component")]
        worker: Option<String>,
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
        /// Redraw the list in place every --interval seconds until Ctrl-C,
        /// as watch(1) does; when stdout is not a terminal, print one list
        /// per interval instead
        #[arg(long, conflicts_with = "json")]
        watch: bool,
        /// Seconds between two lists with --watch
        #[arg(long, value_name = "SECONDS", default_value_t = 2.0)]
        interval: f64,
    },
    /// Complete a promise with a payload; prints `completed`, or `already
    /// completed` if someone was first (the first payload stays)
    #[command(group = clap::ArgGroup::new("payload").required(true))]
    Complete {
        /// The promise id as listed or printed: COMPONENT-ID/WORKER-NAME/OPLOG-INDEX
        promise_id: String,
        /// The payload as text (sent as its UTF-8 bytes)
        #[arg(
            long,
            value_name = "TEXT",
            group = "payload",
            allow_hyphen_values = true
        )]
        data: Option<String>,
        /// The payload read from a file ("-" reads stdin)
        #[arg(long, value_name = "FILE", group = "payload")]
        data_file: Option<PathBuf>,
        /// The payload as a JSON value (checked, then sent as compact JSON text)
        #[arg(
            long,
            value_name = "VALUE",
            group = "payload",
            allow_hyphen_values = true
        )]
        json: Option<String>,
    },
    /// Reject a promise with an error; prints `rejected`, or `already
    /// settled` if someone was first
    Reject {
        /// The promise id as listed or printed: COMPONENT-ID/WORKER-NAME/OPLOG-INDEX
        promise_id: String,
        /// What went wrong, for people (the waiting guest receives it)
        #[arg(long, value_name = "TEXT", allow_hyphen_values = true)]
        error: String,
        /// Data to attach to the rejection, as text (sent as its UTF-8 bytes)
        #[arg(long, value_name = "TEXT", allow_hyphen_values = true)]
        data: Option<String>,
    },
    /// Show one promise: its status, deadline, and payload or error once settled
    Show {
        /// The promise id as listed or printed: COMPONENT-ID/WORKER-NAME/OPLOG-INDEX
        promise_id: String,
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Run an export in a new worker with an input; prints the promise of
    /// its result
    When {
        /// Component id
        component: String,
        /// The export to run (it takes list<u8>)
        function: String,
        /// The input as text (sent as its UTF-8 bytes)
        #[arg(
            long,
            value_name = "TEXT",
            allow_hyphen_values = true,
            conflicts_with = "json"
        )]
        input: Option<String>,
        /// The input as a JSON value (sent as its JSON text)
        #[arg(long, value_name = "VALUE", allow_hyphen_values = true)]
        json: Option<String>,
        #[command(flatten)]
        options: PromiseOptionArgs,
    },
    /// Once a promise settles, run an export in a new worker with the
    /// settlement; prints the promise of its result
    Then {
        /// The promise to follow: COMPONENT-ID/WORKER-NAME/OPLOG-INDEX
        source: String,
        /// Component id of the export
        component: String,
        /// The export to run (it takes list<u8> or the settlement)
        function: String,
        #[command(flatten)]
        options: PromiseOptionArgs,
    },
    /// Make a completion link for a pending promise and print its URL:
    /// whoever holds it can complete (or reject) this promise and nothing
    /// else, with no API token, until it expires. Treat it as a secret
    Link {
        /// The promise id as listed or printed: COMPONENT-ID/WORKER-NAME/OPLOG-INDEX
        promise_id: String,
        /// How long the link works: 90s, 30m, 12h, 7d [default: 7 days; at
        /// most 366 days]
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
        expires_in: Option<std::time::Duration>,
        /// What its holder may do
        #[arg(long, value_enum, default_value_t = LinkActionArg::Complete)]
        action: LinkActionArg,
        /// Print JSON (token, url, action, expiresAt) instead of the URL
        #[arg(long)]
        json: bool,
    },
}

/// `vow promise link --action`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LinkActionArg {
    /// Complete it with a payload
    Complete,
    /// Reject it with an error
    Reject,
    /// Either
    Both,
}

impl LinkActionArg {
    fn as_str(self) -> &'static str {
        match self {
            Self::Complete => "complete",
            Self::Reject => "reject",
            Self::Both => "both",
        }
    }
}

/// `vow link-keys`: the keys that sign completion links.
#[derive(Debug, Subcommand)]
enum LinkKeysCommand {
    /// List the key ids; the last signs new links
    List,
    /// Add a key that signs new links from now on; links signed before
    /// keep working. A running server picks it up without a restart
    Rotate,
    /// Remove a key: every link it signed stops working
    Retire {
        /// The key id, as listed
        id: u32,
    },
}

/// Where `vow link-keys` finds the key file.
#[derive(Debug, Args)]
struct LinkKeysArgs {
    /// The key file (as given to `vow serve --link-keys`)
    #[arg(
        long,
        global = true,
        env = "VOW_LINK_KEYS",
        value_name = "FILE",
        conflicts_with = "data_dir"
    )]
    file: Option<PathBuf>,
    /// The data directory whose key file (DATA-DIR/link-keys) to use
    /// [default: $XDG_DATA_HOME/vow or ~/.local/share/vow]
    #[arg(long, global = true, env = "VOW_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

/// Options of a promise made from the command line.
#[derive(Debug, clap::Args)]
struct PromiseOptionArgs {
    /// Reject the promise with timed-out if still pending after this many milliseconds
    #[arg(long, value_name = "MS")]
    timeout_ms: Option<u64>,
    /// Delete the promise this many milliseconds after it settles
    #[arg(long, value_name = "MS")]
    retention_ms: Option<u64>,
    /// The payload's WIT type, such as 'record { approved: bool }'
    #[arg(long, value_name = "WIT")]
    payload_type: Option<String>,
}

/// A promise status as typed on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum PromiseStatusArg {
    /// Not settled yet
    Pending,
    /// Completed with a payload (also `fulfilled`)
    #[value(alias = "fulfilled")]
    Completed,
    /// Rejected with an error
    Rejected,
    /// Rejected because its timeout passed
    TimedOut,
}

impl PromiseStatusArg {
    /// The REST spelling.
    fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Completed => "completed",
            Self::Rejected => "rejected",
            Self::TimedOut => "timed-out",
        }
    }
}

/// Parses `KEY=VALUE`.
fn parse_key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {text:?}")),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return report(&anyhow::Error::new(error).context("cannot start tokio")),
    };
    let otlp = match &cli.command {
        Command::Serve(args) => Some(&args.otlp),
        _ => None,
    };
    // Inside the runtime: the span export runs on it.
    let telemetry = {
        let _inside = runtime.enter();
        telemetry::init(cli.verbose, cli.log_format, otlp)
    };
    let telemetry = match telemetry {
        Ok(telemetry) => telemetry,
        Err(error) => return report(&error),
    };
    let outcome = runtime.block_on(dispatch(cli.command));
    // The runtime still runs the last export.
    telemetry.shutdown();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => report(&error),
    }
}

async fn dispatch(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Run(args) => run::run(args).await,
        Command::Serve(args) => serve::serve(*args).await,
        Command::Component { server, command } => remote::component(&server, command).await,
        Command::Worker { server, command } => remote::worker(&server, command).await,
        Command::Promise { server, command } => remote::promise(&server, command).await,
        Command::Node { server, command } => remote::node(&server, command).await,
        Command::LinkKeys { place, command } => local::link_keys(place, command),
    }
}

/// Prints an error as one `error: ...` line and picks the exit code.
fn report(error: &anyhow::Error) -> ExitCode {
    // Output piped into `head` and closed early is not a failure worth a message.
    let broken_pipe = error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    });
    if broken_pipe {
        return ExitCode::SUCCESS;
    }
    output::error_line(&format!("error: {}", one_line(error)));
    ExitCode::FAILURE
}

/// The error and its causes joined by ": ", leaving out a cause whose text
/// the line already holds (some errors print their source themselves).
fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_definition_is_consistent() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
    }

    #[test]
    fn key_values_split_at_the_first_equals_sign() {
        assert_eq!(
            parse_key_value("A=b=c"),
            Ok(("A".to_owned(), "b=c".to_owned()))
        );
        assert_eq!(parse_key_value("A="), Ok(("A".to_owned(), String::new())));
        assert!(parse_key_value("=x").is_err());
        assert!(parse_key_value("nothing").is_err());
    }
}
