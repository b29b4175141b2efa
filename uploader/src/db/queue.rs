//! What the worker asks of the queue: [`QueueApi`] is the narrow part it needs; [`Db`]
//! implements it over the pool, and the worker's unit tests over an in-memory fake.

use super::rows::{Claim, OutcomeRecord, ProviderState, WriteBackStatus};
use super::{get, sql, statement, Db, DbError};
use chrono::{DateTime, Utc};
use std::future::Future;
use std::time::Duration;

/// What the worker asks of the queue.
pub trait QueueApi: Send + Sync + 'static {
    /// Leases up to `n` due images (only `venue`'s when given).
    fn claim(
        &self,
        worker: &str,
        n: i32,
        lease: Duration,
        venue: Option<i64>,
    ) -> impl Future<Output = Result<Vec<Claim>, DbError>> + Send;
    /// Keeps a lease for `lease` more; false when the token is stale.
    fn extend(
        &self,
        job_id: i64,
        token: &str,
        lease: Duration,
    ) -> impl Future<Output = Result<bool, DbError>> + Send;
    /// Gives an image back unattempted; false when the token is stale.
    fn release(
        &self,
        job_id: i64,
        token: &str,
    ) -> impl Future<Output = Result<bool, DbError>> + Send;
    /// Records outcomes; each entry's result, in order.
    fn record(
        &self,
        outcomes: &[OutcomeRecord],
    ) -> impl Future<Output = Result<Vec<(i64, WriteBackStatus)>, DbError>> + Send;
    /// Pauses a provider (`*`: all) for every uploader.
    fn pause(
        &self,
        provider: &str,
        until: DateTime<Utc>,
        reason: &str,
    ) -> impl Future<Output = Result<(), DbError>> + Send;
    /// Every provider's pause and last success.
    fn providers(&self) -> impl Future<Output = Result<Vec<ProviderState>, DbError>> + Send;
    /// When the next image becomes claimable (only `venue`'s when given).
    fn next_due(
        &self,
        venue: Option<i64>,
    ) -> impl Future<Output = Result<Option<DateTime<Utc>>, DbError>> + Send;
}

fn lease_seconds(lease: Duration) -> i32 {
    lease.as_secs().clamp(1, 86_400) as i32
}

impl QueueApi for Db {
    async fn claim(
        &self,
        worker: &str,
        n: i32,
        lease: Duration,
        venue: Option<i64>,
    ) -> Result<Vec<Claim>, DbError> {
        let q = match venue {
            None => statement(sql::CLAIM)
                .bind(worker)
                .bind(n)
                .bind(lease_seconds(lease)),
            Some(v) => statement(sql::CLAIM_VENUE)
                .bind(worker)
                .bind(v)
                .bind(n)
                .bind(lease_seconds(lease)),
        };
        self.rows(q).await?.iter().map(Claim::read).collect()
    }

    async fn extend(&self, job_id: i64, token: &str, lease: Duration) -> Result<bool, DbError> {
        let r = self
            .row(
                statement(sql::EXTEND_LEASE)
                    .bind(job_id)
                    .bind(token)
                    .bind(lease_seconds(lease)),
            )
            .await?;
        Ok(get::<Option<bool>>(&r, 0)?.unwrap_or(false))
    }

    async fn release(&self, job_id: i64, token: &str) -> Result<bool, DbError> {
        let r = self
            .row(statement(sql::RELEASE).bind(job_id).bind(token))
            .await?;
        Ok(get::<Option<bool>>(&r, 0)?.unwrap_or(false))
    }

    async fn record(
        &self,
        outcomes: &[OutcomeRecord],
    ) -> Result<Vec<(i64, WriteBackStatus)>, DbError> {
        let json = serde_json::to_value(outcomes).map_err(|e| DbError::Setup(e.to_string()))?;
        let rows = self.rows(statement(sql::RECORD_RESULTS).bind(json)).await?;
        rows.iter()
            .map(|r| {
                let id: i64 = get(r, 0)?;
                let status: String = get(r, 1)?;
                WriteBackStatus::parse(&status)
                    .map(|s| (id, s))
                    .ok_or_else(|| DbError::shape("venue_image_record_results", status))
            })
            .collect()
    }

    async fn pause(
        &self,
        provider: &str,
        until: DateTime<Utc>,
        reason: &str,
    ) -> Result<(), DbError> {
        self.row(
            statement(sql::PAUSE_PROVIDER)
                .bind(provider)
                .bind(until)
                .bind(reason),
        )
        .await?;
        Ok(())
    }

    async fn providers(&self) -> Result<Vec<ProviderState>, DbError> {
        self.rows(statement(sql::PROVIDER_STATES))
            .await?
            .iter()
            .map(ProviderState::read)
            .collect()
    }

    async fn next_due(&self, venue: Option<i64>) -> Result<Option<DateTime<Utc>>, DbError> {
        let r = self.row(statement(sql::NEXT_DUE).bind(venue)).await?;
        get(&r, 0)
    }
}
