//! [`FileTokenStore`]: rotated OAuth2 refresh tokens in their own file, apart from run history.
//!
//! The file (by convention `<state dir>/tokens.json`) is readable and writable only by its
//! owner (mode 0600, set explicitly on every write and on an existing file at open). When a
//! [`SecretKey`] is configured (`DOVETAIL_SECRET_KEY`, 32 bytes as hex or base64) the whole
//! token map is sealed with XChaCha20-Poly1305 under a fresh random nonce per write;
//! without one the tokens are stored plainly (owner-only) and the store says so at warn.
//!
//! Every save is atomic: the new content goes to a temporary file in the same directory,
//! is `fsync`ed, renamed over the old file and the directory is synced, so a crash leaves
//! the old or the new token, never a torn file. Saves from several processes are serialized
//! by an `flock` on `<file>.lock`.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions, Permissions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chacha20poly1305::aead::{Aead, Generate, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use dovetail_core::remote::TokenStore;
use dovetail_core::{Error, Secret};
use serde::{Deserialize, Serialize};

/// The environment variable holding the token store's key.
pub const SECRET_KEY_ENV: &str = "DOVETAIL_SECRET_KEY";

const FORMAT: &str = "dovetail-tokens";
const CIPHER: &str = "xchacha20poly1305";
/// Binds the ciphertext to this file format.
const AAD: &[u8] = b"dovetail-tokens v1";

/// A 32-byte key for the token store. `Debug` never prints it.
#[derive(Clone)]
pub struct SecretKey([u8; 32]);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey([redacted])")
    }
}

impl SecretKey {
    /// Parse 32 bytes written as 64 hex digits or as base64 (standard or URL-safe, padded
    /// or not). Fails with a config error that never echoes the text.
    pub fn parse(text: &str) -> Result<SecretKey, Error> {
        let t = text.trim();
        let bytes = if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
            (0..32).map(|i| u8::from_str_radix(&t[2 * i..2 * i + 2], 16)).collect::<Result<Vec<u8>, _>>().ok()
        } else {
            use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
            [&B64, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD].iter().find_map(|e| e.decode(t).ok())
        };
        match bytes.and_then(|b| <[u8; 32]>::try_from(b).ok()) {
            Some(k) => Ok(SecretKey(k)),
            None => Err(Error::config(format!(
                "the token store key ({SECRET_KEY_ENV}) must be 32 bytes written as 64 hex digits or base64"
            ))),
        }
    }

    /// Seal `plain` bound to `context` (XChaCha20-Poly1305; `context` is authenticated, not
    /// stored): a random 24-byte nonce followed by the ciphertext. For stores other than the
    /// token file (the PostgreSQL store's token table).
    pub fn seal(&self, context: &[u8], plain: &[u8]) -> Result<Vec<u8>, Error> {
        let nonce = XNonce::generate();
        let ct = cipher(self)
            .encrypt(&nonce, Payload { msg: plain, aad: context })
            .map_err(|_| Error::internal("token store: cannot encrypt"))?;
        let mut out = nonce.as_slice().to_vec();
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Open what [`SecretKey::seal`] sealed with the same `context`; `None` when the key or
    /// the context differ or the bytes are damaged.
    pub fn unseal(&self, context: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        let (nonce, ct) = sealed.split_at_checked(24)?;
        let nonce = XNonce::try_from(nonce).ok()?;
        cipher(self).decrypt(&nonce, Payload { msg: ct, aad: context }).ok()
    }

    /// The key in `DOVETAIL_SECRET_KEY`, if that variable is set and not empty.
    pub fn from_env() -> Result<Option<SecretKey>, Error> {
        match std::env::var(SECRET_KEY_ENV) {
            Ok(v) if !v.trim().is_empty() => SecretKey::parse(&v).map(Some),
            _ => Ok(None),
        }
    }
}

/// The file's JSON form: either `tokens` (plain) or `nonce` + `ciphertext` (sealed).
#[derive(Serialize, Deserialize)]
struct Envelope {
    format: String,
    version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tokens: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cipher: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nonce: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ciphertext: Option<String>,
}

/// A [`TokenStore`] in one owner-only file, encrypted when a key is configured.
#[derive(Clone)]
pub struct FileTokenStore {
    path: PathBuf,
    key: Option<SecretKey>,
    /// Serializes this process's read-modify-write cycles (the flock covers other processes).
    write: Arc<Mutex<()>>,
}

impl std::fmt::Debug for FileTokenStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileTokenStore").field("path", &self.path).field("encrypted", &self.key.is_some()).finish()
    }
}

impl FileTokenStore {
    /// Open the store at `path` (the file is created on the first save), sealing it with
    /// `key` when given. An existing file is made owner-only and must be readable: a sealed
    /// file without a key, or with the wrong one, is refused with a config error.
    pub fn open(path: impl AsRef<Path>, key: Option<SecretKey>) -> Result<FileTokenStore, Error> {
        let path = path.as_ref().to_path_buf();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                Error::config(format!("cannot create the directory `{}` for the token store", parent.display()))
                    .with_source(e)
            })?;
        }
        if path.exists() {
            std::fs::set_permissions(&path, Permissions::from_mode(0o600)).map_err(|e| {
                Error::config(format!("cannot make the token store `{}` owner-only", path.display())).with_source(e)
            })?;
        }
        let store = FileTokenStore { path, key, write: Arc::default() };
        store.read()?;
        if store.key.is_none() {
            tracing::warn!(
                path = %store.path.display(),
                "OAuth2 tokens are stored unencrypted (owner-only file); set {SECRET_KEY_ENV} to encrypt them"
            );
        }
        Ok(store)
    }

    /// Open `<state_dir>/tokens.json` with the key from `DOVETAIL_SECRET_KEY`, if set.
    pub fn open_in_dir(state_dir: impl AsRef<Path>) -> Result<FileTokenStore, Error> {
        FileTokenStore::open(state_dir.as_ref().join("tokens.json"), SecretKey::from_env()?)
    }

    /// The token file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether writes are encrypted.
    pub fn is_encrypted(&self) -> bool {
        self.key.is_some()
    }

    /// The stored map (empty when the file does not exist yet).
    fn read(&self) -> Result<BTreeMap<String, String>, Error> {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
            Err(e) => return Err(self.err("cannot read").with_source(e)),
        };
        let env: Envelope = serde_json::from_slice(&bytes).map_err(|e| self.err("cannot parse").with_source(e))?;
        if env.format != FORMAT || env.version != 1 {
            return Err(self.err("does not hold dovetail tokens (format version 1) in"));
        }
        if let Some(tokens) = env.tokens {
            return Ok(tokens);
        }
        let Some(key) = &self.key else {
            return Err(Error::config(format!(
                "the token store `{}` is encrypted; set {SECRET_KEY_ENV} to the key it was written with",
                self.path.display()
            )));
        };
        let decode = |s: Option<String>| s.and_then(|s| B64.decode(s).ok());
        let (Some(nonce), Some(ct)) = (decode(env.nonce), decode(env.ciphertext)) else {
            return Err(self.err("finds no nonce or ciphertext in"));
        };
        let nonce = XNonce::try_from(nonce.as_slice()).map_err(|_| self.err("finds a bad nonce in"))?;
        let plain = cipher(key).decrypt(&nonce, Payload { msg: &ct, aad: AAD }).map_err(|_| {
            Error::config(format!(
                "cannot decrypt the token store `{}`: {SECRET_KEY_ENV} is not the key it was written with, \
                 or the file is damaged",
                self.path.display()
            ))
        })?;
        serde_json::from_slice(&plain).map_err(|e| self.err("cannot parse the decrypted").with_source(e))
    }

    /// Write `tokens` atomically (temp file, fsync, rename, directory fsync), owner-only.
    fn write(&self, tokens: &BTreeMap<String, String>) -> Result<(), Error> {
        let mut env =
            Envelope { format: FORMAT.into(), version: 1, tokens: None, cipher: None, nonce: None, ciphertext: None };
        match &self.key {
            None => env.tokens = Some(tokens.clone()),
            Some(key) => {
                let plain = serde_json::to_vec(tokens).map_err(|e| self.err("cannot encode").with_source(e))?;
                let nonce = XNonce::generate();
                let ct = cipher(key)
                    .encrypt(&nonce, Payload { msg: &plain, aad: AAD })
                    .map_err(|_| self.err("cannot encrypt"))?;
                env.cipher = Some(CIPHER.into());
                env.nonce = Some(B64.encode(nonce.as_slice()));
                env.ciphertext = Some(B64.encode(ct));
            }
        }
        let bytes = serde_json::to_vec_pretty(&env).map_err(|e| self.err("cannot encode").with_source(e))?;
        let mut tmp_name = self.path.file_name().unwrap_or_default().to_os_string();
        tmp_name.push(format!(".tmp-{}", std::process::id()));
        let tmp = self.path.with_file_name(tmp_name);
        let io = |what: &str, e: std::io::Error| self.err(what).with_source(e);
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| io("cannot create a temporary file for", e))?;
        f.set_permissions(Permissions::from_mode(0o600)).map_err(|e| io("cannot restrict", e))?;
        f.write_all(&bytes).and_then(|()| f.sync_all()).map_err(|e| io("cannot write", e))?;
        drop(f);
        std::fs::rename(&tmp, &self.path).map_err(|e| io("cannot replace", e))?;
        if let Some(dir) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io("cannot sync the directory of", e))?;
        }
        Ok(())
    }

    fn err(&self, what: &str) -> Error {
        Error::permanent(format!("token store: {what} `{}`", self.path.display()))
    }

    /// Hold the cross-process lock on `<file>.lock` while `f` runs.
    fn locked<T>(&self, f: impl FnOnce() -> Result<T, Error>) -> Result<T, Error> {
        let _me = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let mut name = self.path.file_name().unwrap_or_default().to_os_string();
        name.push(".lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(self.path.with_file_name(name))
            .map_err(|e| self.err("cannot open the lock file of").with_source(e))?;
        lock.lock().map_err(|e| self.err("cannot lock").with_source(e))?;
        f()
    }
}

fn cipher(key: &SecretKey) -> XChaCha20Poly1305 {
    XChaCha20Poly1305::new(&key.0.into())
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, Error> + Send + 'static) -> Result<T, Error> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Error::internal("token store task failed").with_source(e))?
}

#[async_trait]
impl TokenStore for FileTokenStore {
    async fn load(&self, key: &str) -> Result<Option<Secret>, Error> {
        let (me, key) = (self.clone(), key.to_owned());
        blocking(move || Ok(me.read()?.remove(&key).map(Secret::new))).await
    }

    async fn save(&self, key: &str, token: &Secret) -> Result<(), Error> {
        let (me, key, token) = (self.clone(), key.to_owned(), token.expose().to_owned());
        blocking(move || {
            me.locked(|| {
                let mut tokens = me.read()?;
                tokens.insert(key, token);
                me.write(&tokens)
            })
        })
        .await
    }
}
