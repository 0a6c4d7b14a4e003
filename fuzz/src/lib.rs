//! What the fuzz targets share beyond `vow_testgen`: promise ids and
//! grants from raw bytes, byte mutations, and component types made once per
//! generated type.

use std::cell::RefCell;
use std::collections::HashMap;

use arbitrary::{Result, Unstructured};
use vow_payload_type::PayloadType;
use vow_runtime::links::{LinkAction, LinkGrant};
use vow_runtime::{ComponentId, MAX_WORKER_NAME_LEN, PromiseId, Type, WorkerId};

/// A promise id with any non-empty worker name.
pub fn promise_id(u: &mut Unstructured<'_>) -> Result<PromiseId> {
    let component = ComponentId(uuid::Uuid::from_u128(u.arbitrary()?));
    let mut name: String = u.arbitrary()?;
    if name.is_empty() {
        name.push('w');
    }
    Ok(PromiseId {
        worker_id: WorkerId::new(component, name),
        oplog_idx: u.arbitrary()?,
    })
}

/// What a completion link may grant: a promise of a worker whose name is
/// at most [`MAX_WORKER_NAME_LEN`] bytes, as every worker's is (a token for
/// a name of some 3,000 bytes is longer than `verify` reads).
pub fn grant(u: &mut Unstructured<'_>) -> Result<LinkGrant> {
    let mut promise = promise_id(u)?;
    let name = &mut promise.worker_id.worker_name;
    while name.len() > MAX_WORKER_NAME_LEN {
        name.pop();
    }
    Ok(LinkGrant {
        promise,
        action: *u.choose(&[LinkAction::Complete, LinkAction::Reject, LinkAction::Both])?,
        expires_at: u.int_in_range(1..=u64::MAX)?,
    })
}

/// `bytes` with a few bytes flipped, inserted or removed, or cut short.
pub fn mutate(u: &mut Unstructured<'_>, mut bytes: Vec<u8>) -> Result<Vec<u8>> {
    for _ in 0..u.int_in_range(1..=3)? {
        let at = u.int_in_range(0..=bytes.len())?;
        match u.choose_index(4)? {
            0 if at < bytes.len() => bytes[at] ^= 1 << u.int_in_range(0..=7)?,
            1 => bytes.insert(at, u.arbitrary()?),
            2 if at < bytes.len() => {
                bytes.remove(at);
            }
            _ => bytes.truncate(at),
        }
    }
    Ok(bytes)
}

/// The component type of `ty`, made once per type text: making one
/// compiles a component, which is slower than everything else a target
/// does.
pub fn component_type(ty: &PayloadType) -> Type {
    thread_local! {
        static CACHE: RefCell<HashMap<String, Type>> = RefCell::new(HashMap::new());
    }
    let key = ty.to_string();
    if let Some(found) = CACHE.with(|c| c.borrow().get(&key).cloned()) {
        return found;
    }
    let made = vow_testgen::component::component_type(ty)
        .unwrap_or_else(|e| panic!("no component type for a generated type: {e:#}"));
    CACHE.with(|c| {
        let mut cache = c.borrow_mut();
        if cache.len() > 10_000 {
            cache.clear();
        }
        cache.insert(key, made.clone());
    });
    made
}
