//! Vendor rate budgets shared by every process on the state: one token bucket per (host,
//! credential hash) in `rate_budgets`, refilled and debited by one upsert per take.
//!
//! A take is a single statement (no transaction around it, no lock held between round
//! trips): the row lock of the upsert serializes processes, `now()` is the server's clock
//! (so hosts' clocks need not agree), and a process takes a chunk of permits at a time
//! (dovetail-http's limiter asks for about a tenth of a second's worth), so the store sees a
//! round trip per chunk, not per request. A wait the vendor asked for is kept as
//! `blocked_until`: while it lasts nothing is granted to anyone.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use dovetail_core::Error;
use dovetail_core::remote::{BudgetGrant, SharedBudget};

use crate::PgState;

/// Refill, then grant `least(floor(tokens), want)` unless blocked; `granted` keeps what was
/// granted for `RETURNING`. $1 key, $2 rate per second, $3 capacity, $4 want, $5 block until.
const TAKE: &str = "
INSERT INTO rate_budgets AS b (key, tokens, granted, updated_at, blocked_until)
VALUES ($1, $3 - CASE WHEN coalesce($5 > now(), false) THEN 0 ELSE least(floor($3), $4) END,
        CASE WHEN coalesce($5 > now(), false) THEN 0 ELSE least(floor($3), $4) END::int, now(), $5)
ON CONFLICT (key) DO UPDATE SET
    tokens = least($3, b.tokens + $2 * greatest(0, extract(epoch FROM now() - b.updated_at)::float8))
        - CASE WHEN coalesce(greatest(b.blocked_until, $5) > now(), false) THEN 0
          ELSE least(floor(least($3, b.tokens + $2 * greatest(0, extract(epoch FROM now() - b.updated_at)::float8))), $4)
          END,
    granted = (CASE WHEN coalesce(greatest(b.blocked_until, $5) > now(), false) THEN 0
          ELSE least(floor(least($3, b.tokens + $2 * greatest(0, extract(epoch FROM now() - b.updated_at)::float8))), $4)
          END)::int,
    updated_at = now(),
    blocked_until = greatest(b.blocked_until, $5)
RETURNING granted, tokens, greatest(0, extract(epoch FROM blocked_until - now())::float8)";

/// A [`SharedBudget`] in the state schema's `rate_budgets` table.
#[derive(Debug, Clone)]
pub struct PgBudget {
    state: PgState,
}

impl PgBudget {
    /// Budgets in `state`'s schema.
    pub fn new(state: PgState) -> Self {
        PgBudget { state }
    }
}

#[async_trait]
impl SharedBudget for PgBudget {
    async fn take(
        &self,
        key: &str,
        want: u32,
        rate: f64,
        capacity: f64,
        block_until: Option<SystemTime>,
    ) -> Result<BudgetGrant, Error> {
        let st = &self.state;
        let c = st.conn().await?;
        let want = f64::from(want);
        let row = c
            .query_one(TAKE, &[&key, &rate, &capacity, &want, &block_until])
            .await
            .map_err(|e| st.err("taking from a shared rate budget", e))?;
        let granted: i32 = row.get(0);
        let tokens: f64 = row.get(1);
        let blocked_s: Option<f64> = row.get(2);
        let blocked = blocked_s.filter(|s| *s > 0.0).map(Duration::from_secs_f64);
        let refill = if rate > 0.0 {
            Duration::from_secs_f64(((1.0 - tokens).max(0.0) / rate).min(3600.0))
        } else {
            Duration::from_secs(1)
        };
        let wait = blocked.unwrap_or_default().max(refill);
        Ok(BudgetGrant { granted: u32::try_from(granted).unwrap_or(0), wait, blocked })
    }
}
