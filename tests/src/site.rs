//! A database set up the way production has it, for the attack suites: the application's
//! role owns the database (so, since PostgreSQL 15, the public schema) and the venues
//! table, and there are logins for each of the extension's roles and one with no grants.

use anyhow::Result;
use serde_json::{json, Value};
use sqlx::{Connection, Executor, PgConnection};

use crate::db::TestDb;

/// A database whose application role owns the database and the venues table (and so
/// has CREATE on public, as every database owner does since PostgreSQL 15), plus logins
/// for each of the extension's roles and one with no grants at all.
pub struct Site {
    pub db: TestDb,
    pub owner: String,
    pub owner_url: String,
    pub uploader_url: String,
    pub reader_url: String,
    pub admin_url: String,
    pub nobody_url: String,
}

impl Site {
    pub async fn new(tag: &str) -> Result<Site> {
        let db = TestDb::new(tag).await?;
        let owner = format!("vi_app_{}", std::process::id());
        let nobody = format!("vi_nobody_{}", std::process::id());
        for login in [&owner, &nobody] {
            db.pool
                .execute(
                    format!(
                        "DO $$ BEGIN CREATE ROLE {login} LOGIN;
                         EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$"
                    )
                    .as_str(),
                )
                .await?;
        }
        let name: String = sqlx::query_scalar("SELECT current_database()")
            .fetch_one(&db.pool)
            .await?;
        db.pool
            .execute(
                format!(
                    "ALTER DATABASE {name} OWNER TO {owner}; ALTER TABLE venues OWNER TO {owner}"
                )
                .as_str(),
            )
            .await?;
        let with_user = |user: &str| -> Result<String> {
            let mut u = url::Url::parse(&db.url)?;
            u.set_username(user)
                .map_err(|_| anyhow::anyhow!("cannot set the user"))?;
            Ok(u.to_string())
        };
        Ok(Site {
            owner_url: with_user(&owner)?,
            nobody_url: with_user(&nobody)?,
            uploader_url: db.login_url("venue_image_uploader").await?,
            reader_url: db.login_url("venue_image_reader").await?,
            admin_url: db.login_url("venue_image_admin").await?,
            owner,
            db,
        })
    }

    pub async fn connect(&self, url: &str) -> Result<PgConnection> {
        Ok(PgConnection::connect(url).await?)
    }

    pub async fn superuser(&self, sql: &str) -> Result<()> {
        self.db.pool.execute(sql).await?;
        Ok(())
    }

    pub async fn scalar<T>(&self, sql: &str) -> Result<T>
    where
        T: for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send + Unpin,
    {
        Ok(sqlx::query_scalar(sql).fetch_one(&self.db.pool).await?)
    }

    /// A venue with one transient failure (queued by the trigger), inserted by the owner.
    pub async fn venue_with_failure(&self, url: &str, retry_count: i64) -> Result<i64> {
        let mut c = self.connect(&self.owner_url).await?;
        let images = json!([{"provider": "here", "provider_url": url, "upload_status": "failed",
                             "retry_count": retry_count,
                             "error_details": {"error_type": "rate_limited"}}]);
        let id = sqlx::query_scalar(
            "INSERT INTO venues (name, venue_images) VALUES ('v', $1) RETURNING id",
        )
        .bind(images)
        .fetch_one(&mut c)
        .await?;
        c.close().await?;
        Ok(id)
    }

    pub async fn element(&self, venue: i64, i: usize) -> Result<Value> {
        let v: Value = sqlx::query_scalar("SELECT venue_images FROM venues WHERE id = $1")
            .bind(venue)
            .fetch_one(&self.db.pool)
            .await?;
        Ok(v[i].clone())
    }

    pub async fn owner_is_superuser(&self) -> Result<bool> {
        Ok(
            sqlx::query_scalar("SELECT rolsuper FROM pg_roles WHERE rolname = $1")
                .bind(&self.owner)
                .fetch_one(&self.db.pool)
                .await?,
        )
    }

    pub async fn finish(self) -> Result<()> {
        self.db.drop().await
    }
}

/// The SQLSTATE of `sql` on `c` (`None`: it succeeded).
pub async fn code_of(c: &mut PgConnection, sql: &str) -> Option<String> {
    match c.execute(sql).await {
        Ok(_) => None,
        Err(e) => Some(
            e.as_database_error()
                .and_then(|d| d.code())
                .map(|c| c.to_string())
                .unwrap_or_else(|| format!("(no SQLSTATE: {e})")),
        ),
    }
}

pub async fn expect_code(c: &mut PgConnection, sql: &str, want: &str) {
    assert_eq!(code_of(c, sql).await.as_deref(), Some(want), "{sql}");
}

/// Claims every due image as `c` (an uploader).
pub async fn claim_all(c: &mut PgConnection) -> Result<Vec<(i64, String)>> {
    Ok(sqlx::query_as(
        "SELECT job_id, lease_token::text FROM venue_image_claim('attacker', 100, 60)",
    )
    .fetch_all(&mut *c)
    .await?)
}

pub async fn unlimited(site: &Site) -> Result<()> {
    site.db.unlimited_rates().await
}
