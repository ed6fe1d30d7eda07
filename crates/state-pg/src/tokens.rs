//! Rotated OAuth2 refresh tokens in the state schema, always sealed with the secret key, and
//! the refresh of a grant made single-flight across every process sharing the schema.
//!
//! A refresh ([`TokenStore::refresh_exclusive`]) runs in one transaction holding an advisory
//! transaction lock keyed by the grant's store key (token endpoint, client, configured
//! credential): it reads the stored refresh token (another process may have rotated it),
//! and the access token last obtained with its due time (`<key>#access`, sealed too), so a
//! process whose token is due uses one another process obtained a moment ago instead of
//! refreshing again; a new refresh token is stored before the lock is released and before
//! anyone uses the access token it came with.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use dovetail_core::remote::{RefreshFn, StoredAccess, StoredGrant, TokenStore};
use dovetail_core::{Error, Secret};
use dovetail_state::{SECRET_KEY_ENV, SecretKey};
use tokio_postgres::GenericClient;

use crate::PgState;

/// A [`TokenStore`] in the `tokens` table; every token sealed with a [`SecretKey`] (there is
/// no plaintext mode: the database is shared).
#[derive(Debug, Clone)]
pub struct PgTokenStore {
    state: PgState,
    key: SecretKey,
}

/// The advisory-lock key of the refresh of the grant stored under `key` in `schema`.
fn lock_key(schema: &str, key: &str) -> i64 {
    xxhash_rust::xxh3::xxh3_64(format!("dovetail token\0{schema}\0{key}").as_bytes()) as i64
}

/// The row beside a grant's refresh token that holds its shared access token.
fn access_key(key: &str) -> String {
    format!("{key}#access")
}

impl PgTokenStore {
    /// Tokens in `state`'s schema sealed with `key`.
    pub fn new(state: PgState, key: SecretKey) -> Self {
        PgTokenStore { state, key }
    }

    async fn read(&self, c: &impl GenericClient, key: &str) -> Result<Option<Vec<u8>>, Error> {
        let st = &self.state;
        let row = c
            .query_opt("SELECT sealed FROM tokens WHERE key = $1", &[&key])
            .await
            .map_err(|e| st.err("reading a stored token", e))?;
        let Some(row) = row else { return Ok(None) };
        let plain = self.key.unseal(key.as_bytes(), row.get(0)).ok_or_else(|| {
            Error::config(format!(
                "cannot decrypt the stored token `{key}` in PostgreSQL at {}: {SECRET_KEY_ENV} is not the key it was \
                 written with",
                st.target().place()
            ))
        })?;
        Ok(Some(plain))
    }

    async fn write(&self, c: &impl GenericClient, key: &str, plain: &[u8]) -> Result<(), Error> {
        let st = &self.state;
        let sealed = self.key.seal(key.as_bytes(), plain)?;
        c.execute(
            "INSERT INTO tokens (key, sealed, updated_at) VALUES ($1, $2, $3)
             ON CONFLICT (key) DO UPDATE SET sealed = excluded.sealed, updated_at = excluded.updated_at",
            &[&key, &sealed, &dovetail_core::now_rfc3339()],
        )
        .await
        .map_err(|e| st.err("storing a token", e))?;
        Ok(())
    }
}

fn utf8(plain: Vec<u8>) -> Result<String, Error> {
    String::from_utf8(plain).map_err(|_| Error::internal("token store: a stored token is not UTF-8"))
}

/// `<due, ms since the epoch>\n<token>` → the shared access token; `None` when unreadable
/// (then it is not used, and the next refresh replaces it).
fn decode_access(plain: Vec<u8>) -> Option<StoredAccess> {
    let text = String::from_utf8(plain).ok()?;
    let (ms, token) = text.split_once('\n')?;
    let refresh_after = SystemTime::UNIX_EPOCH.checked_add(Duration::from_millis(ms.parse().ok()?))?;
    Some(StoredAccess { token: Secret::new(token.to_owned()), refresh_after })
}

fn encode_access(a: &StoredAccess) -> Vec<u8> {
    let ms = a.refresh_after.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    format!("{ms}\n{}", a.token.expose()).into_bytes()
}

#[async_trait]
impl TokenStore for PgTokenStore {
    async fn load(&self, key: &str) -> Result<Option<Secret>, Error> {
        let c = self.state.conn().await?;
        Ok(self.read(&**c, key).await?.map(utf8).transpose()?.map(Secret::new))
    }

    async fn save(&self, key: &str, token: &Secret) -> Result<(), Error> {
        let c = self.state.conn().await?;
        self.write(&**c, key, token.expose().as_bytes()).await
    }

    async fn refresh_exclusive(&self, key: &str, refresh: RefreshFn<'_>) -> Result<(), Error> {
        let st = &self.state;
        let mut c = st.conn().await?;
        let tx = c.transaction().await.map_err(|e| st.err("starting a token refresh", e))?;
        // Held until commit or rollback: a process that dies mid-refresh releases it.
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&lock_key(st.target().schema(), key)])
            .await
            .map_err(|e| st.err("waiting for another process's token refresh", e))?;
        let refresh_token = self.read(&*tx, key).await?.map(utf8).transpose()?.map(Secret::new);
        let access = self.read(&*tx, &access_key(key)).await?.and_then(decode_access);
        let Some(new) = refresh(StoredGrant { refresh: refresh_token, access }).await? else {
            return tx.commit().await.map_err(|e| st.err("ending a token refresh", e));
        };
        if let Some(t) = &new.refresh {
            self.write(&*tx, key, t.expose().as_bytes()).await?;
        }
        match &new.access {
            Some(a) => self.write(&*tx, &access_key(key), &encode_access(a)).await?,
            None => {
                tx.execute("DELETE FROM tokens WHERE key = $1", &[&access_key(key)])
                    .await
                    .map_err(|e| st.err("storing a token", e))?;
            }
        }
        tx.commit().await.map_err(|e| st.err("storing a rotated token", e))
    }
}
