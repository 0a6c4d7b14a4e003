//! Completion links: capabilities for one promise.
//!
//! A link token names one promise, what its holder may do with it (complete,
//! reject, or both) and when it expires, and carries an HMAC-SHA256 tag made
//! with a key the holder never sees. Whoever holds the token may settle that
//! promise and nothing else; changing one bit of it, or presenting it after
//! it expired, gets it refused.
//!
//! Tokens are stateless: nothing is stored per link, so minting one is a
//! signature and checking one is a signature plus a clock read. The keys
//! live in a key file ([`LinkKeys::open`]), one per line with an id; the last
//! line signs new tokens, every line verifies. Rotating appends a key (old
//! links keep working), retiring removes one (its links stop working). A
//! running executor rereads the file when it changes, so neither needs a
//! restart.
//!
//! ## Token layout
//!
//! The token is the URL-safe base64 (no padding) of
//!
//! | bytes | field |
//! |---|---|
//! | 1 | format version, 1 |
//! | 4 | key id, big-endian |
//! | 1 | allowed actions: bit 0 complete, bit 1 reject |
//! | 8 | expiry, milliseconds since the Unix epoch, big-endian |
//! | 16 | component id |
//! | 8 | oplog index of the promise, big-endian |
//! | n | worker name, UTF-8 |
//! | 32 | HMAC-SHA256 of the bytes above, prefixed by [`DOMAIN`] |

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac as _};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::ids::{ComponentId, PromiseId, WorkerId};

type HmacSha256 = Hmac<Sha256>;

/// Signed with every tag, so a tag made for something else with the same
/// key can never pass for a link.
const DOMAIN: &[u8] = b"vow completion link v1\0";

/// The token format this module writes and reads.
const VERSION: u8 = 1;

/// Bytes before the worker name.
const HEADER: usize = 1 + 4 + 1 + 8 + 16 + 8;

/// Bytes of the tag.
const TAG: usize = 32;

/// Bytes of a key.
const KEY_BYTES: usize = 32;

/// How long a link lives unless asked otherwise.
pub const DEFAULT_LINK_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

/// The longest a link may live.
pub const MAX_LINK_LIFETIME: Duration = Duration::from_secs(366 * 24 * 3600);

/// What a link lets its holder do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkAction {
    /// Complete the promise with a payload (the default).
    #[default]
    Complete,
    /// Reject it with an error.
    Reject,
    /// Either.
    Both,
}

impl LinkAction {
    fn bits(self) -> u8 {
        match self {
            Self::Complete => 1,
            Self::Reject => 2,
            Self::Both => 3,
        }
    }

    fn from_bits(bits: u8) -> Option<Self> {
        match bits {
            1 => Some(Self::Complete),
            2 => Some(Self::Reject),
            3 => Some(Self::Both),
            _ => None,
        }
    }

    /// Whether it lets its holder complete the promise.
    pub fn completes(self) -> bool {
        self.bits() & 1 != 0
    }

    /// Whether it lets its holder reject the promise.
    pub fn rejects(self) -> bool {
        self.bits() & 2 != 0
    }

    /// `complete`, `reject` or `both`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Complete => "complete",
            Self::Reject => "reject",
            Self::Both => "both",
        }
    }
}

impl std::str::FromStr for LinkAction {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "complete" => Ok(Self::Complete),
            "reject" => Ok(Self::Reject),
            "both" => Ok(Self::Both),
            other => Err(format!(
                "a link's action is \"complete\", \"reject\" or \"both\", not {other:?}"
            )),
        }
    }
}

/// What a valid token grants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkGrant {
    /// The one promise it is for.
    pub promise: PromiseId,
    /// What its holder may do.
    pub action: LinkAction,
    /// When it stops working, in milliseconds since the Unix epoch.
    pub expires_at: u64,
}

/// A minted link.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompletionLink {
    /// The token: the whole capability.
    pub token: String,
    /// `{public url}/v1/links/{token}` when the executor knows the server's
    /// public URL ([`ExecutorBuilder::public_url`](crate::ExecutorBuilder::public_url)).
    pub url: Option<String>,
    /// What its holder may do.
    pub action: LinkAction,
    /// When it stops working, in milliseconds since the Unix epoch.
    pub expires_at: u64,
}

/// What to mint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkRequest {
    /// How long the link lives ([`DEFAULT_LINK_LIFETIME`] when none; at most
    /// [`MAX_LINK_LIFETIME`]).
    pub expires_in: Option<Duration>,
    /// What its holder may do.
    pub action: LinkAction,
}

impl LinkRequest {
    /// The expiry of a link minted at `now` (milliseconds since the Unix
    /// epoch), or why the lifetime is refused.
    pub(crate) fn expiry(&self, now: u64) -> Result<u64, LinkError> {
        let lifetime = self.expires_in.unwrap_or(DEFAULT_LINK_LIFETIME);
        if lifetime.is_zero() || lifetime > MAX_LINK_LIFETIME {
            return Err(LinkError::Lifetime(lifetime));
        }
        let millis = u64::try_from(lifetime.as_millis()).unwrap_or(u64::MAX);
        Ok(now.saturating_add(millis))
    }
}

/// Why a token is refused, or a key file cannot be used.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LinkError {
    /// Not a token this server wrote (bad encoding, wrong length or
    /// version).
    #[error("not a completion link token")]
    Malformed,
    /// Signed with a key this server does not have (retired, or another
    /// server's).
    #[error("this completion link was not issued by this server, or its key was retired")]
    UnknownKey,
    /// The tag does not match: the token was altered.
    #[error("this completion link's signature does not match: the token was altered")]
    BadSignature,
    /// Its time passed.
    #[error("this completion link expired at {}", crate::links::rfc3339_millis(*.0))]
    Expired(u64),
    /// The holder asked for an action the link does not allow.
    #[error("this completion link allows only to {} the promise", .0.as_str())]
    NotAllowed(LinkAction),
    /// A lifetime of zero or over [`MAX_LINK_LIFETIME`].
    #[error("a link lives between 1 ms and 366 days, not {0:?}")]
    Lifetime(Duration),
    /// The key file cannot be read, written or parsed.
    #[error("link key file {path}: {reason}")]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

/// Milliseconds since the epoch as RFC 3339 text, for messages.
pub(crate) fn rfc3339_millis(millis: u64) -> String {
    let secs = millis / 1000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(i64::try_from(days).unwrap_or(i64::MAX));
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = if m <= 2 { y + 1 } else { y };
    (
        year,
        u32::try_from(m).unwrap_or(1),
        u32::try_from(d).unwrap_or(1),
    )
}

/// One signing key.
#[derive(Clone)]
struct Key {
    id: u32,
    secret: [u8; KEY_BYTES],
}

/// What a key file looked like when read: its modification time and
/// length. A change rereads it.
type Stamp = Option<(SystemTime, u64)>;

/// The keys of a key file, and what the file looked like when read.
struct Ring {
    keys: Arc<[Key]>,
    seen: Stamp,
}

/// The keys that sign and verify completion links.
///
/// Cheap to clone; clones share the keys.
#[derive(Clone)]
pub struct LinkKeys {
    path: Option<Arc<PathBuf>>,
    ring: Arc<Mutex<Ring>>,
}

impl std::fmt::Debug for LinkKeys {
    /// Never prints a key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkKeys")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl LinkKeys {
    /// One random key kept in memory: links die with the process. For
    /// executors without a data directory, and tests.
    pub fn ephemeral() -> Self {
        Self {
            path: None,
            ring: Arc::new(Mutex::new(Ring {
                keys: Arc::from([Key {
                    id: 1,
                    secret: fresh_secret(),
                }]),
                seen: None,
            })),
        }
    }

    /// The keys in `path`, which is created with one new key (readable by
    /// its owner only) when missing.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, LinkError> {
        let path = path.into();
        if !path.exists() {
            write_new(
                &path,
                &[Key {
                    id: 1,
                    secret: fresh_secret(),
                }],
            )?;
        }
        let (keys, seen) = read(&path)?;
        Ok(Self {
            path: Some(Arc::new(path)),
            ring: Arc::new(Mutex::new(Ring {
                keys: keys.into(),
                seen,
            })),
        })
    }

    /// Adds a new key to the file at `path` (made when missing); it signs
    /// new links from now on, and links signed before still verify. Returns
    /// the new key's id.
    pub fn rotate(path: &Path) -> Result<u32, LinkError> {
        let mut keys = if path.exists() {
            read(path)?.0
        } else {
            Vec::new()
        };
        let id = keys
            .iter()
            .map(|k| k.id)
            .max()
            .unwrap_or(0)
            .saturating_add(1);
        keys.push(Key {
            id,
            secret: fresh_secret(),
        });
        write_new(path, &keys)?;
        Ok(id)
    }

    /// Removes the key `id` from the file at `path`: links signed with it
    /// stop working. The key that signs new links cannot be retired before
    /// a newer one exists.
    pub fn retire(path: &Path, id: u32) -> Result<(), LinkError> {
        let keys = read(path)?.0;
        let key_file = |reason: String| LinkError::KeyFile {
            path: path.to_owned(),
            reason,
        };
        if !keys.iter().any(|k| k.id == id) {
            return Err(key_file(format!("has no key {id}")));
        }
        if keys.last().is_some_and(|k| k.id == id) {
            return Err(key_file(format!(
                "key {id} signs new links; rotate first, then retire it"
            )));
        }
        let kept: Vec<Key> = keys.into_iter().filter(|k| k.id != id).collect();
        write_new(path, &kept)
    }

    /// The ids of the keys in the file at `path`, oldest first; the last
    /// signs new links.
    pub fn ids(path: &Path) -> Result<Vec<u32>, LinkError> {
        Ok(read(path)?.0.iter().map(|k| k.id).collect())
    }

    /// Where the keys are kept, if in a file.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref().map(PathBuf::as_path)
    }

    /// The keys, reread first when the file changed since the last read.
    /// A file that became unreadable keeps the keys last read (logged).
    fn keys(&self) -> Arc<[Key]> {
        let mut ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(path) = &self.path {
            let now_seen = stamp(path);
            if now_seen.is_some() && now_seen != ring.seen {
                match read(path) {
                    Ok((keys, seen)) => {
                        tracing::info!(path = %path.display(), keys = keys.len(), "link keys reloaded");
                        *ring = Ring {
                            keys: keys.into(),
                            seen,
                        };
                    }
                    Err(error) => {
                        tracing::error!(%error, "cannot reload the link keys; keeping the ones read before");
                    }
                }
            }
        }
        Arc::clone(&ring.keys)
    }

    /// A token for `grant`, signed with the newest key.
    pub fn sign(&self, grant: &LinkGrant) -> String {
        let keys = self.keys();
        // A ring is never empty: `read` refuses an empty file.
        let Some(key) = keys.last() else {
            return String::new();
        };
        let mut bytes =
            Vec::with_capacity(HEADER + grant.promise.worker_id.worker_name.len() + TAG);
        bytes.push(VERSION);
        bytes.extend_from_slice(&key.id.to_be_bytes());
        bytes.push(grant.action.bits());
        bytes.extend_from_slice(&grant.expires_at.to_be_bytes());
        bytes.extend_from_slice(grant.promise.worker_id.component_id.0.as_bytes());
        bytes.extend_from_slice(&grant.promise.oplog_idx.to_be_bytes());
        bytes.extend_from_slice(grant.promise.worker_id.worker_name.as_bytes());
        let tag = mac(&key.secret, &bytes).finalize().into_bytes();
        bytes.extend_from_slice(&tag);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// What `token` grants, checked against the keys and the time `now`
    /// (milliseconds since the Unix epoch).
    pub fn verify(&self, token: &str, now: u64) -> Result<LinkGrant, LinkError> {
        let (key_id, body, tag) = split(token)?;
        let keys = self.keys();
        let key = keys
            .iter()
            .find(|k| k.id == key_id)
            .ok_or(LinkError::UnknownKey)?;
        mac(&key.secret, &body)
            .verify_slice(&tag)
            .map_err(|_| LinkError::BadSignature)?;
        let grant = parse(&body)?;
        if now >= grant.expires_at {
            return Err(LinkError::Expired(grant.expires_at));
        }
        Ok(grant)
    }
}

/// An executor's keys and public URL: what minting and checking need.
#[derive(Clone, Debug)]
pub(crate) struct Links {
    keys: LinkKeys,
    public_url: Option<Arc<str>>,
}

impl Links {
    pub(crate) fn new(keys: LinkKeys, public_url: Option<String>) -> Self {
        Self {
            keys,
            public_url: public_url.map(Arc::from),
        }
    }

    pub(crate) fn keys(&self) -> &LinkKeys {
        &self.keys
    }

    /// A link to `promise` minted at `now` (milliseconds since the Unix
    /// epoch). Whether the promise may have one is the caller's to check.
    pub(crate) fn mint(
        &self,
        promise: &PromiseId,
        request: LinkRequest,
        now: u64,
    ) -> Result<CompletionLink, LinkError> {
        let expires_at = request.expiry(now)?;
        let token = self.keys.sign(&LinkGrant {
            promise: promise.clone(),
            action: request.action,
            expires_at,
        });
        Ok(CompletionLink {
            url: self
                .public_url
                .as_ref()
                .map(|base| format!("{base}/v1/links/{token}")),
            token,
            action: request.action,
            expires_at,
        })
    }
}

/// The key id, the signed bytes and the tag of a token, without checking
/// the tag.
fn split(token: &str) -> Result<(u32, Vec<u8>, Vec<u8>), LinkError> {
    // A worker name is at most a few hundred bytes: anything much longer
    // is not worth decoding.
    if token.len() > 4096 {
        return Err(LinkError::Malformed);
    }
    let mut bytes = URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| LinkError::Malformed)?;
    if bytes.len() < HEADER + 1 + TAG || bytes[0] != VERSION {
        return Err(LinkError::Malformed);
    }
    let tag = bytes.split_off(bytes.len() - TAG);
    let key_id = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
    Ok((key_id, bytes, tag))
}

/// The grant in signed bytes whose tag was checked.
fn parse(body: &[u8]) -> Result<LinkGrant, LinkError> {
    let word = |at: usize| -> Result<u64, LinkError> {
        let slice = body.get(at..at + 8).ok_or(LinkError::Malformed)?;
        let array: [u8; 8] = slice.try_into().map_err(|_| LinkError::Malformed)?;
        Ok(u64::from_be_bytes(array))
    };
    let action = LinkAction::from_bits(body[5]).ok_or(LinkError::Malformed)?;
    let expires_at = word(6)?;
    let component: [u8; 16] = body[14..30].try_into().map_err(|_| LinkError::Malformed)?;
    let oplog_idx = word(30)?;
    let name = std::str::from_utf8(&body[HEADER..]).map_err(|_| LinkError::Malformed)?;
    Ok(LinkGrant {
        promise: PromiseId {
            worker_id: WorkerId::new(ComponentId(uuid::Uuid::from_bytes(component)), name),
            oplog_idx,
        },
        action,
        expires_at,
    })
}

fn mac(secret: &[u8; KEY_BYTES], bytes: &[u8]) -> HmacSha256 {
    // HMAC takes a key of any length; 32 bytes cannot be refused.
    let mut mac = <HmacSha256 as hmac::Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(DOMAIN);
    mac.update(bytes);
    mac
}

fn fresh_secret() -> [u8; KEY_BYTES] {
    let mut secret = [0u8; KEY_BYTES];
    rand::Rng::fill_bytes(&mut rand::rng(), &mut secret);
    secret
}

fn stamp(path: &Path) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// The keys in a key file: `# comments`, blank lines, and one
/// `{id} {base64url key}` per line.
fn read(path: &Path) -> Result<(Vec<Key>, Stamp), LinkError> {
    let key_file = |reason: String| LinkError::KeyFile {
        path: path.to_owned(),
        reason,
    };
    let seen = stamp(path);
    let text = std::fs::read_to_string(path).map_err(|e| key_file(e.to_string()))?;
    let mut keys = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |what: &str| key_file(format!("line {}: {what}", number + 1));
        let (id, secret) = line
            .split_once(' ')
            .ok_or_else(|| bad("expected `{id} {key}`"))?;
        let id: u32 = id.parse().map_err(|_| bad("the key id is not a number"))?;
        let secret = URL_SAFE_NO_PAD
            .decode(secret.trim())
            .ok()
            .and_then(|s| <[u8; KEY_BYTES]>::try_from(s).ok())
            .ok_or_else(|| bad("the key is not 32 bytes of URL-safe base64"))?;
        if keys.iter().any(|k: &Key| k.id == id) {
            return Err(bad(&format!("key id {id} appears twice")));
        }
        keys.push(Key { id, secret });
    }
    if keys.is_empty() {
        return Err(key_file("holds no key".to_owned()));
    }
    Ok((keys, seen))
}

/// Writes `keys` to `path` through a temporary file renamed over it, so a
/// reader never sees half a file; readable by its owner only.
fn write_new(path: &Path, keys: &[Key]) -> Result<(), LinkError> {
    let key_file = |reason: String| LinkError::KeyFile {
        path: path.to_owned(),
        reason,
    };
    let mut text = String::from(
        "# Vow's completion link keys: `{id} {key}`, one per line.\n\
         # The last line signs new links; every line verifies.\n\
         # Rotate with `vow link-keys rotate`; anyone with this file can forge links.\n",
    );
    for key in keys {
        text.push_str(&format!(
            "{} {}\n",
            key.id,
            URL_SAFE_NO_PAD.encode(key.secret)
        ));
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| key_file(e.to_string()))?;
    }
    let temporary = path.with_extension("new");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options
        .open(&temporary)
        .map_err(|e| key_file(e.to_string()))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| key_file(e.to_string()))?;
    std::fs::rename(&temporary, path).map_err(|e| key_file(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(name: &str, action: LinkAction, expires_at: u64) -> LinkGrant {
        LinkGrant {
            promise: PromiseId {
                worker_id: WorkerId::new(ComponentId::new_random(), name),
                oplog_idx: 7,
            },
            action,
            expires_at,
        }
    }

    #[test]
    fn a_signed_token_verifies_to_its_grant() {
        let keys = LinkKeys::ephemeral();
        for action in [LinkAction::Complete, LinkAction::Reject, LinkAction::Both] {
            let grant = grant("approval/ü 1", action, 2_000);
            let token = keys.sign(&grant);
            assert_eq!(keys.verify(&token, 1_999), Ok(grant.clone()));
            assert_eq!(keys.verify(&token, 2_000), Err(LinkError::Expired(2_000)));
        }
    }

    #[test]
    fn every_altered_bit_is_refused() {
        let keys = LinkKeys::ephemeral();
        let token = keys.sign(&grant("w", LinkAction::Complete, u64::MAX));
        let bytes = URL_SAFE_NO_PAD.decode(&token).unwrap_or_default();
        for i in 0..bytes.len() * 8 {
            let mut altered = bytes.clone();
            altered[i / 8] ^= 1 << (i % 8);
            let result = keys.verify(&URL_SAFE_NO_PAD.encode(&altered), 0);
            assert!(result.is_err(), "bit {i} flipped still verifies");
        }
    }

    #[test]
    fn another_servers_key_does_not_verify() {
        let grant = grant("w", LinkAction::Complete, u64::MAX);
        let token = LinkKeys::ephemeral().sign(&grant);
        assert_eq!(
            LinkKeys::ephemeral().verify(&token, 0),
            Err(LinkError::BadSignature)
        );
        assert_eq!(
            LinkKeys::ephemeral().verify("not a token", 0),
            Err(LinkError::Malformed)
        );
        assert_eq!(
            LinkKeys::ephemeral().verify("", 0),
            Err(LinkError::Malformed)
        );
    }

    #[test]
    fn rotation_keeps_old_links_and_retiring_ends_them() -> Result<(), LinkError> {
        let dir = tempdir();
        let path = dir.join("link-keys");
        let keys = LinkKeys::open(&path)?;
        let grant = grant("w", LinkAction::Both, u64::MAX);
        let old = keys.sign(&grant);
        assert_eq!(LinkKeys::rotate(&path)?, 2);
        // The running instance sees the new file.
        bump_mtime(&path);
        let new = keys.sign(&grant);
        assert_ne!(old, new);
        assert_eq!(keys.verify(&old, 0), Ok(grant.clone()));
        assert_eq!(keys.verify(&new, 0), Ok(grant.clone()));
        assert!(LinkKeys::retire(&path, 2).is_err(), "the signing key stays");
        LinkKeys::retire(&path, 1)?;
        bump_mtime(&path);
        assert_eq!(keys.verify(&old, 0), Err(LinkError::UnknownKey));
        assert_eq!(keys.verify(&new, 0), Ok(grant));
        assert_eq!(LinkKeys::ids(&path)?, vec![2]);
        // Reopening reads the same keys.
        assert_eq!(
            LinkKeys::open(&path)?.verify(&new, 0).map(|g| g.action),
            Ok(LinkAction::Both)
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path)
                .map(|m| m.permissions().mode())
                .unwrap_or(0);
            assert_eq!(mode & 0o777, 0o600);
        }
        let _ = std::fs::remove_dir_all(dir);
        Ok(())
    }

    #[test]
    fn a_broken_key_file_is_refused_with_the_line() {
        let dir = tempdir();
        let path = dir.join("link-keys");
        std::fs::write(&path, "# keys\n1 abc\n").unwrap_or_default();
        let error = LinkKeys::open(&path)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("line 2: the key is not 32 bytes"), "{error}");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn lifetimes_are_bounded() {
        let request = |secs| LinkRequest {
            expires_in: Some(Duration::from_secs(secs)),
            action: LinkAction::Complete,
        };
        assert_eq!(request(60).expiry(1_000), Ok(61_000));
        assert!(request(0).expiry(0).is_err());
        assert!(request(400 * 86_400).expiry(0).is_err());
        assert_eq!(
            LinkRequest::default().expiry(0),
            Ok(u64::try_from(DEFAULT_LINK_LIFETIME.as_millis()).unwrap_or(0))
        );
        assert_eq!(rfc3339_millis(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_millis(1_795_478_400_000), "2026-11-24T00:00:00Z");
    }

    fn tempdir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("vow-links-{}", uuid::Uuid::new_v4()));
        let _ = std::fs::create_dir_all(&dir);
        dir
    }

    /// Makes the next read see a change even within the file system's
    /// timestamp granularity.
    fn bump_mtime(path: &Path) {
        if let Ok(file) = std::fs::File::options().append(true).open(path) {
            let later = SystemTime::now() + Duration::from_secs(5);
            let _ = file.set_modified(later);
        }
    }
}
