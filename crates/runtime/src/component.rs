//! Components: compiling (with an optional on-disk cache), checking imports,
//! and indexing exported functions by name.

use std::collections::HashMap;
use std::hash::{Hash as _, Hasher as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use sha2::{Digest as _, Sha256};
use wasmtime::Engine;
use wasmtime::component::types::{ComponentFunc, ComponentItem};
use wasmtime::component::{Component, ComponentExportIndex, InstancePre, Linker, ResourceType};

use crate::error::{Error, Result, chain};
use crate::ids::ComponentId;
use crate::values::wit_type;
use crate::worker::WorkerState;

/// A named parameter of an exported function.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ParamInfo {
    /// Parameter name from the WIT.
    pub name: String,
    /// Its type, printed as WIT.
    #[serde(rename = "type")]
    pub ty: String,
}

/// An exported function: its invocation name and WIT signature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ExportInfo {
    /// Name to invoke it by: `run` for a world-level export, `iface.{run}`
    /// for a function of an exported interface.
    pub name: String,
    /// Parameters in order.
    pub params: Vec<ParamInfo>,
    /// Result types (zero or one).
    pub results: Vec<String>,
}

/// A component added to an executor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ComponentInfo {
    /// Its id.
    pub id: ComponentId,
    /// The name it was added with.
    pub name: String,
    /// Size of the component binary in bytes.
    pub size: usize,
    /// SHA-256 of the component binary, hex.
    pub sha256: String,
    /// Exported functions.
    pub exports: Vec<ExportInfo>,
}

/// What the executor needs to call one export.
pub(crate) struct ExportFunc {
    pub(crate) name: String,
    pub(crate) index: ComponentExportIndex,
    pub(crate) ty: ComponentFunc,
    pub(crate) result_count: usize,
}

/// A compiled, import-checked component ready to instantiate.
pub(crate) struct LoadedComponent {
    pub(crate) info: ComponentInfo,
    pub(crate) pre: InstancePre<WorkerState>,
    exports: HashMap<String, Arc<ExportFunc>>,
    /// The `golem:api` snapshot exports, when the component has both.
    pub(crate) snapshot: Option<SnapshotExports>,
}

/// `golem:api/save-snapshot@1.1.0#save` and
/// `golem:api/load-snapshot@1.1.0#load`.
pub(crate) struct SnapshotExports {
    pub(crate) save: Arc<ExportFunc>,
    pub(crate) load: Arc<ExportFunc>,
}

/// The invocation names of the snapshot exports.
const SAVE_SNAPSHOT: &str = "golem:api/save-snapshot@1.1.0.{save}";
const LOAD_SNAPSHOT: &str = "golem:api/load-snapshot@1.1.0.{load}";

impl LoadedComponent {
    /// Finds an export by its name; interface functions are also found as
    /// `iface.func`, `iface#func` and `iface#{func}`.
    pub(crate) fn export(&self, name: &str) -> Option<Arc<ExportFunc>> {
        if let Some(f) = self.exports.get(name) {
            return Some(Arc::clone(f));
        }
        let (iface, func) = name.rsplit_once('#').or_else(|| name.rsplit_once('.'))?;
        let func = func.trim_start_matches('{').trim_end_matches('}');
        self.exports.get(&format!("{iface}.{{{func}}}")).cloned()
    }
}

/// Hex SHA-256 of the bytes.
fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compiles a component, loading or filling the cache when one is set.
pub(crate) async fn compile(
    engine: &Engine,
    bytes: Arc<Vec<u8>>,
    sha256: &str,
    cache_dir: Option<&Path>,
) -> Result<Component> {
    let cache_file = cache_dir.map(|dir| cache_path(engine, dir, sha256));
    if let Some(path) = &cache_file
        && path.exists()
    {
        match load_cached(engine, path) {
            Ok(component) => {
                tracing::debug!(path = %path.display(), "component loaded from cache");
                return Ok(component);
            }
            // A stale or damaged cache file is rebuilt, not fatal.
            Err(error) => tracing::warn!(path = %path.display(), %error, "ignoring cache file"),
        }
    }
    let engine = engine.clone();
    let path = cache_file.clone();
    tokio::task::spawn_blocking(move || -> Result<Component> {
        let component = Component::from_binary(&engine, &bytes)
            .map_err(|e| Error::InvalidComponent { reason: chain(&e) })?;
        if let Some(path) = path {
            write_cache(&component, &path);
        }
        Ok(component)
    })
    .await
    .map_err(|e| Error::Config(format!("compilation task failed: {e}")))?
}

/// Cache files are keyed by the content hash and by everything in the engine
/// configuration that affects compiled code.
fn cache_path(engine: &Engine, dir: &Path, sha256: &str) -> PathBuf {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    dir.join(format!("{sha256}-{:016x}.cwasm", hasher.finish()))
}

#[allow(unsafe_code)]
fn load_cached(engine: &Engine, path: &Path) -> wasmtime::Result<Component> {
    // SAFETY: the file was written by `write_cache` from `Component::serialize`
    // of this same engine configuration (the name carries the engine's
    // compatibility hash), and wasmtime still validates its header.
    unsafe { Component::deserialize_file(engine, path) }
}

fn write_cache(component: &Component, path: &Path) {
    let result = (|| -> std::io::Result<()> {
        let bytes = component.serialize().map_err(std::io::Error::other)?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        // Write then rename, so a concurrent reader never sees half a file.
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(error) = result {
        tracing::warn!(path = %path.display(), %error, "could not write the compilation cache");
    }
}

/// Where a component came from.
pub(crate) struct Source {
    pub(crate) id: ComponentId,
    pub(crate) name: String,
    pub(crate) size: usize,
    pub(crate) sha256: String,
}

/// Links the component and indexes its exports.
pub(crate) fn load(
    engine: &Engine,
    linker: &Linker<WorkerState>,
    scratch_linker: impl Fn() -> Result<Linker<WorkerState>>,
    component: Component,
    source: Source,
) -> Result<LoadedComponent> {
    let pre = match linker.instantiate_pre(&component) {
        Ok(pre) => pre,
        Err(_) => {
            return Err(Error::MissingImports {
                imports: missing_imports(&component, scratch_linker)?,
            });
        }
    };
    let mut exports = HashMap::new();
    let mut infos = Vec::new();
    let ty = component.component_type();
    for (export_name, item) in ty.exports(engine) {
        match item.ty {
            ComponentItem::ComponentFunc(func) => {
                if let Some(index) = component.get_export_index(None, export_name) {
                    add_export(
                        &mut exports,
                        &mut infos,
                        export_name.to_owned(),
                        index,
                        func,
                    );
                }
            }
            ComponentItem::ComponentInstance(instance) => {
                let Some(instance_index) = component.get_export_index(None, export_name) else {
                    continue;
                };
                for (func_name, item) in instance.exports(engine) {
                    if let ComponentItem::ComponentFunc(func) = item.ty
                        && let Some(index) =
                            component.get_export_index(Some(&instance_index), func_name)
                    {
                        let name = format!("{export_name}.{{{func_name}}}");
                        add_export(&mut exports, &mut infos, name, index, func);
                    }
                }
            }
            _ => {}
        }
    }
    infos.sort_by(|a, b| a.name.cmp(&b.name));
    let snapshot = match (exports.get(SAVE_SNAPSHOT), exports.get(LOAD_SNAPSHOT)) {
        (Some(save), Some(load)) => Some(SnapshotExports {
            save: Arc::clone(save),
            load: Arc::clone(load),
        }),
        _ => None,
    };
    Ok(LoadedComponent {
        info: ComponentInfo {
            id: source.id,
            name: source.name,
            size: source.size,
            sha256: source.sha256,
            exports: infos,
        },
        pre,
        exports,
        snapshot,
    })
}

fn add_export(
    exports: &mut HashMap<String, Arc<ExportFunc>>,
    infos: &mut Vec<ExportInfo>,
    name: String,
    index: ComponentExportIndex,
    ty: ComponentFunc,
) {
    infos.push(ExportInfo {
        name: name.clone(),
        params: ty
            .params()
            .map(|(n, t)| ParamInfo {
                name: n.to_owned(),
                ty: wit_type(&t),
            })
            .collect(),
        results: ty.results().map(|t| wit_type(&t)).collect(),
    });
    let result_count = ty.results().len();
    exports.insert(
        name.clone(),
        Arc::new(ExportFunc {
            name,
            index,
            ty,
            result_count,
        }),
    );
}

pub(crate) fn sha256_of(bytes: &[u8]) -> String {
    sha256_hex(bytes)
}

/// Names every import the linker cannot satisfy.
///
/// Wasmtime reports only the first unsatisfied import. To name all of them,
/// this links against a scratch linker: each time an import is reported, it
/// is defined there as a stub that traps, and linking is tried again. An
/// import whose name the linker does define (with another shape) is reported
/// with wasmtime's reason; a name it does not define is reported as is.
fn missing_imports(
    component: &Component,
    new_linker: impl Fn() -> Result<Linker<WorkerState>>,
) -> Result<Vec<String>> {
    let engine = component.engine().clone();
    let ty = component.component_type();
    let imports: Vec<(String, ComponentItem)> = ty
        .imports(&engine)
        .map(|(name, item)| (name.to_owned(), item.ty))
        .collect();
    let mut linker = new_linker()?;
    linker.allow_shadowing(true);
    let mut missing = Vec::new();
    for _ in 0..=imports.len() {
        let error = match linker.instantiate_pre(component) {
            Ok(_) => break,
            Err(error) => error,
        };
        let message = chain(&error);
        let Some((name, item)) = imports
            .iter()
            .find(|(name, _)| message.contains(&format!("`{name}`")))
        else {
            missing.push(message);
            break;
        };
        let causes: Vec<String> = error.chain().skip(1).map(|c| c.to_string()).collect();
        missing.push(if causes.is_empty() || is_absent(&error, &engine, item) {
            name.clone()
        } else {
            format!("{name} ({})", causes.join(": "))
        });
        if stub(&mut linker, name, item).is_err() {
            break;
        }
    }
    Ok(missing)
}

/// Whether a linking error says the import is absent altogether rather than
/// present with another shape: wasmtime checks an absent instance export by
/// export and fails on the first one with "... implementation is missing".
fn is_absent(error: &wasmtime::Error, engine: &Engine, item: &ComponentItem) -> bool {
    let causes: Vec<String> = error.chain().map(|c| c.to_string()).collect();
    let missing = causes
        .last()
        .is_some_and(|root| root.ends_with("implementation is missing"));
    match item {
        ComponentItem::ComponentInstance(instance) => {
            let first = instance.exports(engine).next().map(|(name, _)| name);
            missing
                && first
                    .is_none_or(|first| causes.iter().any(|c| c.contains(&format!("`{first}`"))))
        }
        _ => missing,
    }
}

fn stub(
    linker: &mut Linker<WorkerState>,
    name: &str,
    item: &ComponentItem,
) -> wasmtime::Result<()> {
    let engine = linker.engine().clone();
    match item {
        ComponentItem::ComponentInstance(instance) => {
            let mut inst = linker.instance(name)?;
            for (export, item) in instance.exports(&engine) {
                match item.ty {
                    ComponentItem::ComponentFunc(_) => {
                        let what = format!("{name}#{export}");
                        inst.func_new(export, move |_, _, _, _| {
                            Err(wasmtime::Error::msg(format!("{what} is not provided")))
                        })?;
                    }
                    ComponentItem::Resource(_) => {
                        inst.resource(export, ResourceType::host::<()>(), |_, _| Ok(()))?;
                    }
                    _ => {}
                }
            }
        }
        ComponentItem::ComponentFunc(_) => {
            let what = name.to_owned();
            linker.root().func_new(name, move |_, _, _, _| {
                Err(wasmtime::Error::msg(format!("{what} is not provided")))
            })?;
        }
        ComponentItem::Resource(_) => {
            linker
                .root()
                .resource(name, ResourceType::host::<()>(), |_, _| Ok(()))?;
        }
        _ => wasmtime::bail!("cannot stub {name}"),
    }
    Ok(())
}
