//! What `vow run` and `vow serve` share: building an executor with the
//! compilation cache, loading component files, and reading calls written in
//! WAVE (`request-approval("deploy")`).

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use vow_runtime::{ComponentId, ComponentInfo, Executor, ExecutorBuilder, FunctionType, Val};
use wasmtime::component::wasm_wave::{parser::ParserError, untyped::UntypedFuncCall};

use crate::CacheArgs;
use crate::output::{self, Spinner};

/// The cache directory when none is given: `$XDG_CACHE_HOME/vow`, else
/// `~/.cache/vow`; `None` when neither variable is usable.
pub(crate) fn default_cache_dir() -> Option<PathBuf> {
    let absolute = |var: &str| {
        std::env::var_os(var)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    absolute("XDG_CACHE_HOME")
        .or_else(|| absolute("HOME").map(|home| home.join(".cache")))
        .map(|dir| dir.join("vow"))
}

/// The data directory when none is given: `$XDG_DATA_HOME/vow`, else
/// `~/.local/share/vow`; `None` when neither variable is usable.
pub(crate) fn default_data_dir() -> Option<PathBuf> {
    let absolute = |var: &str| {
        std::env::var_os(var)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    absolute("XDG_DATA_HOME")
        .or_else(|| absolute("HOME").map(|home| home.join(".local").join("share")))
        .map(|dir| dir.join("vow"))
}

/// An executor builder whose compiled components are cached as the flags say.
pub(crate) fn builder(cache: &CacheArgs) -> ExecutorBuilder {
    let mut builder = Executor::builder();
    let dir = if cache.no_cache {
        None
    } else {
        cache.cache_dir.clone().or_else(default_cache_dir)
    };
    match dir {
        Some(dir) => {
            tracing::debug!(dir = %dir.display(), "caching compiled components");
            builder = builder.cache_dir(dir);
        }
        None if !cache.no_cache => {
            tracing::warn!(
                "no cache directory (HOME is not set); components are compiled every time"
            );
        }
        None => {}
    }
    builder
}

/// Applies `vow run`'s and `vow serve`'s limits on what a worker may do.
pub(crate) fn limit(
    builder: ExecutorBuilder,
    limits: &crate::GuestLimits,
) -> anyhow::Result<ExecutorBuilder> {
    if limits.max_open_promises == 0 {
        bail!("--max-open-promises must be 1 or more");
    }
    Ok(builder
        .max_open_promises(limits.max_open_promises)
        .max_payload(limits.max_payload)
        .max_run_time(seconds("--max-run-time", limits.max_run_time)?))
}

/// A number of seconds given with `flag`; 0 is no limit (`None`).
pub(crate) fn seconds(flag: &str, value: f64) -> anyhow::Result<Option<std::time::Duration>> {
    if !value.is_finite() || value < 0.0 {
        bail!("{flag} must be a number of seconds, 0 or more");
    }
    Ok((value > 0.0).then(|| std::time::Duration::from_secs_f64(value)))
}

/// Compiles and adds a component file, with a spinner while it compiles.
pub(crate) async fn load(executor: &Executor, path: &Path) -> anyhow::Result<ComponentInfo> {
    let spinner = Spinner::start(format!("compiling {}", path.display()));
    let id = executor.ensure_component_file(path).await;
    drop(spinner);
    let id: ComponentId = id.with_context(|| format!("cannot load {}", path.display()))?;
    Ok(executor.component(id)?)
}

/// A call parsed from `NAME(ARGS)`, its arguments typed by the export.
#[derive(Debug)]
pub(crate) struct Call {
    /// The export's canonical name.
    pub(crate) function: String,
    /// The arguments, one per parameter.
    pub(crate) params: Vec<Val>,
}

/// Parses `text` as a call of one of `component`'s exports. The name is
/// everything before the first `(` (so `iface.{run}` works as listed); a
/// name alone calls a function without parameters.
pub(crate) fn parse_call(
    executor: &Executor,
    component: &ComponentInfo,
    text: &str,
) -> anyhow::Result<Call> {
    let text = text.trim();
    let (name, args) = match text.find('(') {
        Some(open) => (text[..open].trim_end(), &text[open..]),
        None => (text, "()"),
    };
    if name.is_empty() {
        bail!("--invoke {text:?} names no function; write it as FUNCTION(ARGS), e.g. run()");
    }
    let ty = match executor.function_type(component.id, name) {
        Ok(ty) => ty,
        Err(vow_runtime::Error::FunctionNotFound { .. }) => {
            bail!("{}", no_such_function(component, name))
        }
        Err(error) => return Err(error.into()),
    };
    let params = parse_args(&ty, name, args)?;
    Ok(Call {
        function: ty.name,
        params,
    })
}

/// Parses `(a, b, ...)` against the function's parameter types.
fn parse_args(ty: &FunctionType, name: &str, args: &str) -> anyhow::Result<Vec<Val>> {
    // WAVE's function-call parser accepts only plain names, so parse a
    // stand-in name of the same length: error positions still match `args`
    // counted from the name's start.
    let stand_in = format!("f{}", "x".repeat(name.len().saturating_sub(1)));
    let source = format!("{stand_in}{args}");
    let describe = |error: ParserError| {
        anyhow::anyhow!(
            "cannot parse the arguments of {}: {}; expected {}",
            ty.name,
            describe_wave_error(&error, &format!("{name}{args}")),
            expected_params(ty)
        )
    };
    let call = UntypedFuncCall::parse(&source).map_err(describe)?;
    let types: Vec<_> = ty.params.iter().map(|(_, t)| t).collect();
    call.to_wasm_params::<Val>(types.iter().copied())
        .map_err(describe)
}

/// `(subject: string)`, for error messages.
fn expected_params(ty: &FunctionType) -> String {
    let params: Vec<String> = ty
        .params
        .iter()
        .map(|(name, t)| format!("{name}: {}", vow_runtime::wit_type(t)))
        .collect();
    format!("({})", params.join(", "))
}

/// A WAVE error as one line, pointing at the text it refers to.
fn describe_wave_error(error: &ParserError, text: &str) -> String {
    let mut message = error.kind().to_string();
    if let Some(detail) = error.detail() {
        message = format!("{message}: {detail}");
    } else if let Some(source) = std::error::Error::source(error) {
        message = format!("{message}: {source}");
    }
    let span = error.span();
    match text.get(span.clone()).filter(|s| !s.is_empty()) {
        Some(snippet) => format!("{message} at {snippet:?} (column {})", span.start + 1),
        None => format!("{message} at column {}", span.start + 1),
    }
}

/// The one-line error for a function the component does not export.
pub(crate) fn no_such_function(component: &ComponentInfo, name: &str) -> String {
    let exports: Vec<String> = component.exports.iter().map(output::signature).collect();
    if exports.is_empty() {
        format!(
            "{} exports no function {name:?} (it exports no functions at all)",
            component.name
        )
    } else {
        format!(
            "{} exports no function {name:?}; its exports: {}",
            component.name,
            exports.join("; ")
        )
    }
}

/// Results as WAVE text, one per result.
pub(crate) fn wave_results(results: &[Val]) -> Vec<String> {
    results
        .iter()
        .map(|val| val.to_wave().unwrap_or_else(|_| format!("{val:?}")))
        .collect()
}

/// `vow link-keys`: works on the key file directly, so it needs no server;
/// a running server rereads the file when it changes.
pub(crate) fn link_keys(
    place: crate::LinkKeysArgs,
    command: crate::LinkKeysCommand,
) -> anyhow::Result<()> {
    use vow_runtime::links::LinkKeys;
    let path = match (place.file, place.data_dir.or_else(default_data_dir)) {
        (Some(file), _) => file,
        (None, Some(dir)) => dir.join(vow_runtime::LINK_KEYS_FILE),
        (None, None) => bail!("no key file: pass --file FILE or --data-dir DIR"),
    };
    match command {
        crate::LinkKeysCommand::List => {
            let ids = LinkKeys::ids(&path)?;
            let last = ids.last().copied();
            for id in ids {
                let role = if Some(id) == last {
                    "signs and verifies"
                } else {
                    "verifies"
                };
                crate::output::line(&format!("{id}\t{role}"))?;
            }
        }
        crate::LinkKeysCommand::Rotate => {
            let id = LinkKeys::rotate(&path)?;
            crate::output::line(&format!(
                "key {id} signs new links; older keys still verify theirs ({})",
                path.display()
            ))?;
        }
        crate::LinkKeysCommand::Retire { id } => {
            LinkKeys::retire(&path, id)?;
            crate::output::line(&format!(
                "key {id} retired: the links it signed no longer work ({})",
                path.display()
            ))?;
        }
    }
    Ok(())
}
