//! Rotated OAuth2 refresh tokens in the state schema, always sealed with the secret key.

use async_trait::async_trait;
use dovetail_core::remote::TokenStore;
use dovetail_core::{Error, Secret};
use dovetail_state::{SECRET_KEY_ENV, SecretKey};

use crate::PgState;

/// A [`TokenStore`] in the `tokens` table; every token sealed with a [`SecretKey`] (there is
/// no plaintext mode: the database is shared).
#[derive(Debug, Clone)]
pub struct PgTokenStore {
    state: PgState,
    key: SecretKey,
}

impl PgTokenStore {
    /// Tokens in `state`'s schema sealed with `key`.
    pub fn new(state: PgState, key: SecretKey) -> Self {
        PgTokenStore { state, key }
    }
}

#[async_trait]
impl TokenStore for PgTokenStore {
    async fn load(&self, key: &str) -> Result<Option<Secret>, Error> {
        let st = &self.state;
        let c = st.conn().await?;
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
        let text = String::from_utf8(plain).map_err(|_| Error::internal("token store: a stored token is not UTF-8"))?;
        Ok(Some(Secret::new(text)))
    }

    async fn save(&self, key: &str, token: &Secret) -> Result<(), Error> {
        let st = &self.state;
        let sealed = self.key.seal(key.as_bytes(), token.expose().as_bytes())?;
        let c = st.conn().await?;
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
