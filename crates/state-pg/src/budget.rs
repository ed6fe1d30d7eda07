//! Vendor rate budgets shared by every process on the state: one token bucket per (host,
//! credential hash) in `rate_budgets`, refilled and debited by one upsert per take.
//!
//! A take is a single statement (no transaction around it, no lock held between round
//! trips): the row lock of the upsert serializes processes, `now()` is the server's clock
//! (so hosts' clocks need not agree), and a process takes a chunk of permits at a time
//! (dovetail-http's limiter asks for about a tenth of a second's worth), so the store sees a
//! round trip per chunk, not per request. A wait the vendor asked for is kept as
//! `blocked_until`: while it lasts nothing is granted to anyone.
//!
//! **The strictest rate wins, fleet-wide.** Each take names the rate and burst its process
//! wants (its configured budget, or the stricter limit it learned from the vendor's
//! `X-RateLimit-*` headers). The bucket keeps the strictest asked within [`STRICT_FOR`]
//! (`rate`, `capacity`, `limited_at`) and refills everyone at it, so a lower limit one worker
//! learned paces the processes that have not seen a response yet too; once nobody has asked
//! for it for [`STRICT_FOR`], the bucket follows the callers again.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use dovetail_core::Error;
use dovetail_core::remote::{BudgetGrant, SharedBudget};

use crate::PgState;

/// How long the strictest rate and burst asked of a bucket stay in force without being
/// asked again.
pub(crate) const STRICT_FOR: Duration = Duration::from_secs(60);

/// Refill at the strictest rate asked lately, then grant `least(floor(tokens), want)`
/// unless blocked; `granted` keeps what was granted for `RETURNING`. $1 key, $2 rate per
/// second, $3 capacity, $4 want, $5 block until, $6 [`STRICT_FOR`] in seconds. Every
/// expression of the update reads the row as it was (`b.`).
static TAKE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let fresh = "b.limited_at > now() - $6 * interval '1 second'";
    let rate = format!("CASE WHEN {fresh} THEN least($2, b.rate) ELSE $2 END");
    let cap = format!("CASE WHEN {fresh} THEN least($3, b.capacity) ELSE $3 END");
    let level =
        format!("least({cap}, b.tokens + {rate} * greatest(0, extract(epoch FROM now() - b.updated_at)::float8))");
    let blocked = "coalesce(greatest(b.blocked_until, $5) > now(), false)";
    let grant = format!("CASE WHEN {blocked} THEN 0 ELSE least(floor({level}), $4) END");
    format!(
        "INSERT INTO rate_budgets AS b (key, tokens, granted, updated_at, blocked_until, rate, capacity, limited_at)
         VALUES ($1, $3 - CASE WHEN coalesce($5 > now(), false) THEN 0 ELSE least(floor($3), $4) END,
                 CASE WHEN coalesce($5 > now(), false) THEN 0 ELSE least(floor($3), $4) END::int, now(), $5,
                 $2, $3, now())
         ON CONFLICT (key) DO UPDATE SET
             tokens = {level} - {grant},
             granted = ({grant})::int,
             updated_at = now(),
             blocked_until = greatest(b.blocked_until, $5),
             rate = {rate},
             capacity = {cap},
             -- kept while a stricter rate than this caller's is in force; renewed otherwise
             limited_at = CASE WHEN {fresh} AND b.rate < $2 THEN b.limited_at ELSE now() END
         RETURNING granted, tokens, greatest(0, extract(epoch FROM blocked_until - now())::float8), rate"
    )
});

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
            .query_one(TAKE.as_str(), &[&key, &rate, &capacity, &want, &block_until, &STRICT_FOR.as_secs_f64()])
            .await
            .map_err(|e| st.err("taking from a shared rate budget", e))?;
        let granted: i32 = row.get(0);
        let tokens: f64 = row.get(1);
        let blocked_s: Option<f64> = row.get(2);
        // The rate in force: a stricter one another process asked for refills slower.
        let rate: f64 = row.get::<_, Option<f64>>(3).unwrap_or(rate);
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
