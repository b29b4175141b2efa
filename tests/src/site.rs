//! A database set up the way production has it, for the attack suites: the application's
//! role owns the database (so, since PostgreSQL 15, the public schema) and the venues
//! table, and there are logins for each of the extension's roles and one with no grants.

use anyhow::Result;
use serde_json::{json, Value};
use sqlx::{Connection, Executor, PgConnection};

pub use crate::db::sqlstate;
use crate::db::{self, TestDb};

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
            db.pool.execute(db::create_login(login).as_str()).await?;
        }
        let name: String = db.scalar("SELECT current_database()").await?;
        db.pool
            .execute(
                format!(
                    "ALTER DATABASE {name} OWNER TO {owner}; ALTER TABLE venues OWNER TO {owner}"
                )
                .as_str(),
            )
            .await?;
        Ok(Site {
            owner_url: db::with_user(&db.url, &owner)?,
            nobody_url: db::with_user(&db.url, &nobody)?,
            uploader_url: db.login_url("venue_image_uploader").await?,
            reader_url: db.login_url("venue_image_reader").await?,
            admin_url: db.login_url("venue_image_admin").await?,
            owner,
            db,
        })
    }

    /// [`Site::new`] with every provider unpaced, for the tests that are not about pacing.
    pub async fn unpaced(tag: &str) -> Result<Site> {
        let s = Site::new(tag).await?;
        s.db.unlimited_rates().await?;
        Ok(s)
    }

    pub async fn connect(&self, url: &str) -> Result<PgConnection> {
        Ok(PgConnection::connect(url).await?)
    }

    pub async fn superuser(&self, sql: &str) -> Result<()> {
        self.db.pool.execute(sql).await?;
        Ok(())
    }

    /// Runs `sql` (one statement or several) as the database owner, on a connection of
    /// its own.
    pub async fn as_owner(&self, sql: &str) -> Result<()> {
        db::run(&self.owner_url, sql).await
    }

    /// A superuser connection to the site's database whose session resolves names through
    /// pg_catalog only, for the test's own checks once traps are planted in public.
    pub async fn checker(&self) -> Result<PgConnection> {
        checker(&self.db.url).await
    }

    pub async fn scalar<T>(&self, sql: &str) -> Result<T>
    where
        T: for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send + Unpin,
    {
        self.db.scalar(sql).await
    }

    /// How many images the queue holds.
    pub async fn queued_jobs(&self) -> Result<i64> {
        self.scalar("SELECT count(*) FROM venue_images.venue_image_jobs")
            .await
    }

    /// Every row of a one-column query of text, run as a superuser.
    pub async fn strings(&self, sql: &str) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(sql).fetch_all(&self.db.pool).await?)
    }

    /// Fails when `sql` (run as a superuser) returns a row; `what` says what a row means.
    pub async fn assert_no_rows(&self, sql: &str, what: &str) -> Result<()> {
        let rows = self
            .strings(&format!("SELECT t::text FROM ({sql}) t"))
            .await?;
        assert!(rows.is_empty(), "{what}: {rows:?}");
        Ok(())
    }

    /// A venue with these images, inserted by the owner (the trigger queues its transient
    /// failures); returns its id.
    pub async fn owner_inserts(&self, images: Value) -> Result<i64> {
        let mut o = self.connect(&self.owner_url).await?;
        let id = insert_venue(&mut o, images).await?;
        o.close().await?;
        Ok(id)
    }

    /// A venue with one transient failure (queued by the trigger), inserted by the owner.
    pub async fn venue_with_failure(&self, url: &str, retry_count: i64) -> Result<i64> {
        self.owner_inserts(
            json!([{"provider": "here", "provider_url": url, "upload_status": "failed",
                                    "retry_count": retry_count,
                                    "error_details": {"error_type": "rate_limited"}}]),
        )
        .await
    }

    /// A venue with one transient failure, claimed by an uploader: the venue, the
    /// uploader's connection and the job (`(job_id, lease_token)`).
    pub async fn one_claimed(&self) -> Result<(i64, PgConnection, (i64, String))> {
        let venue = self
            .venue_with_failure("https://p.example/1.jpg", 0)
            .await?;
        let mut u = self.connect(&self.uploader_url).await?;
        let mut jobs = claim_all(&mut u).await?;
        anyhow::ensure!(jobs.len() == 1, "claimed {jobs:?}");
        Ok((venue, u, jobs.remove(0)))
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

/// Inserts a venue named `v` with these images on `c`; returns its id.
pub async fn insert_venue(c: &mut PgConnection, images: Value) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "INSERT INTO public.venues (name, venue_images) VALUES ('v', $1) RETURNING id",
    )
    .bind(images)
    .fetch_one(c)
    .await?)
}

/// A superuser connection to `url` whose session resolves names through pg_catalog only.
pub async fn checker(url: &str) -> Result<PgConnection> {
    let mut c = PgConnection::connect(url).await?;
    c.execute("SET search_path = pg_catalog").await?;
    Ok(c)
}

/// The one value of a one-row, one-column query on `c`.
pub async fn one<T>(c: &mut PgConnection, sql: &str) -> Result<T>
where
    T: for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send + Unpin,
{
    Ok(sqlx::query_scalar(sql).fetch_one(c).await?)
}

/// The value of a setting in the session of `c`.
pub async fn show(c: &mut PgConnection, setting: &str) -> Result<String> {
    one(c, &format!("SHOW {setting}")).await
}

/// The SQLSTATE of `sql` on `c` (`None`: it succeeded).
pub async fn code_of(c: &mut PgConnection, sql: &str) -> Option<String> {
    match c.execute(sql).await {
        Ok(_) => None,
        Err(e) => Some(sqlstate(&e).unwrap_or_else(|| format!("(no SQLSTATE: {e})"))),
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

/// Records a failure of a claimed job (`(job_id, lease_token)`) as `c`; the image's new
/// status (`None`: the lease was stale).
pub async fn record_failure(
    c: &mut PgConnection,
    job: &(i64, String),
    error_type: &str,
    status_code: i32,
    message: &str,
) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar("SELECT venue_image_record_failure($1, $2::uuid, $3, $4, $5)")
        .bind(job.0)
        .bind(&job.1)
        .bind(error_type)
        .bind(status_code)
        .bind(message)
        .fetch_one(c)
        .await
}
