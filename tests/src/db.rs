//! Database helpers shared by tests, benchmarks and the demo.

use crate::dataset::{copy_rows, Shape};
use anyhow::{Context, Result};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, Executor, PgConnection, PgPool};
use std::io::Write;
use std::str::FromStr;
use std::time::Instant;

/// The venues table (the application's schema, `sql/fixtures/venues_schema.sql`).
pub const VENUES_SCHEMA: &str = include_str!("../../sql/fixtures/venues_schema.sql");

/// A throwaway database for one test: created from `DATABASE_URL`'s server, with the
/// migrations and the venues schema applied; dropped by [`TestDb::drop`].
pub struct TestDb {
    /// Its URL.
    pub url: String,
    /// A pool on it.
    pub pool: PgPool,
    name: String,
    admin: String,
}

fn with_database(url: &str, db: &str) -> Result<String> {
    let mut u = url::Url::parse(url)?;
    u.set_path(&format!("/{db}"));
    Ok(u.to_string())
}

/// `url` with `user` as its user name.
pub fn with_user(url: &str, user: &str) -> Result<String> {
    let mut u = url::Url::parse(url)?;
    u.set_username(user)
        .map_err(|_| anyhow::anyhow!("cannot set the user of {url}"))?;
    Ok(u.to_string())
}

/// SQL that creates the login role `name` unless it exists. Trust authentication needs
/// no password.
pub fn create_login(name: &str) -> String {
    create_login_with(name, "")
}

/// [`create_login`] with more options of CREATE ROLE (`IN ROLE venue_image_uploader`).
pub fn create_login_with(name: &str, extra: &str) -> String {
    format!(
        "DO $$ BEGIN CREATE ROLE {name} LOGIN {extra};
         EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$"
    )
}

impl TestDb {
    /// Creates `vi_<tag>_<pid>_<n>`.
    pub async fn new(tag: &str) -> Result<TestDb> {
        Self::on(&database_url()?, tag).await
    }

    /// Creates `vi_<tag>_<pid>_<n>` on the server of `admin`.
    pub async fn on(admin: &str, tag: &str) -> Result<TestDb> {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let admin = admin.to_string();
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let name = format!("vi_{tag}_{}_{n}", std::process::id());
        let url = create_database(&admin, &name).await?;
        let mut c = PgConnection::connect(&url).await?;
        if let Ok(from) = std::env::var("VENUE_IMAGES_UPGRADE_FROM") {
            // Run the suite on an extension upgraded from an earlier release.
            upgrade_from(&mut c, &from).await?;
        }
        migrate(&mut c).await?;
        c.close().await?;
        let pool = pool(&url, 8).await?;
        Ok(TestDb {
            url,
            pool,
            name,
            admin,
        })
    }

    /// [`TestDb::new`] holding `venues` generated venues of the default [`Shape`] with
    /// this seed.
    pub async fn seeded(tag: &str, venues: u64, seed: u64) -> Result<TestDb> {
        let t = TestDb::new(tag).await?;
        let shape = Shape {
            venues,
            seed,
            ..Shape::default()
        };
        self::seed(&t.url, &shape, false).await?;
        Ok(t)
    }

    /// Sets a default for new sessions on this database (`ALTER DATABASE ... SET`):
    /// what the uploaders it starts will see.
    pub async fn set_default(&self, setting: &str, value: &str) -> Result<()> {
        sqlx::query(&format!(
            "ALTER DATABASE {} SET {setting} = {value}",
            self.name
        ))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Quick retries (`venue_images.retry_base_seconds` 1), so that a test sees three
    /// attempts within seconds.
    pub async fn quick_retries(&self) -> Result<()> {
        self.set_default("venue_images.retry_base_seconds", "1")
            .await
    }

    /// A login role of this test process that is a member of `role` (for example
    /// `venue_image_uploader`), and the URL of this database as that login: what a real
    /// sidecar or analyst connects with. Trust authentication needs no password.
    pub async fn login_url(&self, role: &str) -> Result<String> {
        let login = format!(
            "vi_{}_{}",
            role.trim_start_matches("venue_image_"),
            std::process::id()
        );
        sqlx::query(&create_login_with(&login, &format!("IN ROLE {role}")))
            .execute(&self.pool)
            .await?;
        with_user(&self.url, &login)
    }

    /// The one value of a one-row, one-column query.
    pub async fn scalar<T>(&self, sql: &str) -> Result<T>
    where
        T: for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send + Unpin,
    {
        Ok(sqlx::query_scalar(sql).fetch_one(&self.pool).await?)
    }

    /// Makes every provider unlimited (tests that are not about pacing).
    pub async fn unlimited_rates(&self) -> Result<()> {
        for p in ["*", "google_places", "foursquare", "here", "unsplash"] {
            sqlx::query("SELECT venue_images.venue_image_set_provider_rate($1, 'Infinity')")
                .bind(p)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    /// Steady state: every provider and ImageKit uploaded something a moment ago, so a 5xx
    /// or a network failure is the image's own (the outage rule has its own test).
    pub async fn providers_healthy(&self) -> Result<()> {
        sqlx::query(
            "INSERT INTO venue_images.venue_image_providers (provider, last_success_at)
             SELECT p, now() FROM unnest(ARRAY['*', 'google_places', 'foursquare', 'here', 'unsplash']) p
             ON CONFLICT (provider) DO UPDATE SET last_success_at = now()",
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Drops the database.
    pub async fn drop(self) -> Result<()> {
        self.pool.close().await;
        drop_database(&self.admin, &self.name).await
    }
}

/// Creates an empty database `name` (dropping any leftover) on `admin`'s server; returns
/// its URL.
pub async fn create_database(admin: &str, name: &str) -> Result<String> {
    let mut conn = PgConnection::connect(admin).await?;
    conn.execute(format!("DROP DATABASE IF EXISTS {name}").as_str())
        .await?;
    conn.execute(format!("CREATE DATABASE {name}").as_str())
        .await?;
    conn.close().await?;
    with_database(admin, name)
}

/// Drops database `name` on `admin`'s server, disconnecting its sessions.
pub async fn drop_database(admin: &str, name: &str) -> Result<()> {
    let mut conn = PgConnection::connect(admin).await?;
    conn.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
        .await?;
    Ok(())
}

/// Creates the extension at version `from` (its frozen script must be installed, see
/// scripts/test.sh) and runs `ALTER EXTENSION venue_images UPDATE`.
pub async fn upgrade_from(conn: &mut PgConnection, from: &str) -> Result<()> {
    conn.execute(format!("CREATE EXTENSION venue_images VERSION '{from}'").as_str())
        .await
        .with_context(|| {
            format!("creating venue_images {from} (is its frozen script installed?)")
        })?;
    conn.execute("ALTER EXTENSION venue_images UPDATE").await?;
    Ok(())
}

/// The venue ids of the high-priority list of `venue_image_overview()`'s answer, in order.
pub fn high_priority_ids(overview: &serde_json::Value) -> Vec<i64> {
    overview["high_priority"]
        .as_array()
        .expect("the overview has a high_priority list")
        .iter()
        .map(|v| v["id"].as_i64().expect("each venue has an id"))
        .collect()
}

/// The SQLSTATE of a database error (`None`: another kind of error).
pub fn sqlstate(e: &sqlx::Error) -> Option<String> {
    e.as_database_error()
        .and_then(|d| d.code())
        .map(|c| c.to_string())
}

/// Runs `sql` (one statement or several) on a connection of its own to `url`.
pub async fn run(url: &str, sql: &str) -> Result<()> {
    let mut c = PgConnection::connect(url).await?;
    c.execute(sql).await?;
    c.close().await?;
    Ok(())
}

/// `DATABASE_URL`, required.
pub fn database_url() -> Result<String> {
    std::env::var("DATABASE_URL").context("DATABASE_URL is not set (scripts/test.sh sets it)")
}

/// A pool on `url` with up to `max` connections.
pub async fn pool(url: &str, max: u32) -> Result<PgPool> {
    let opts = PgConnectOptions::from_str(url)?;
    Ok(PgPoolOptions::new()
        .max_connections(max)
        .connect_with(opts)
        .await?)
}

/// Migrations of one test process run one at a time: they create cluster-wide roles.
static MIGRATING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Creates the venues table (the application's schema), then applies `sql/*.sql`
/// migrations in order.
pub async fn migrate(conn: &mut PgConnection) -> Result<()> {
    let _one_at_a_time = MIGRATING.lock().await;
    conn.execute(VENUES_SCHEMA).await?;
    for (name, sql) in migrations()? {
        conn.execute(sql.as_str())
            .await
            .with_context(|| format!("migration {name}"))?;
    }
    Ok(())
}

/// Applies the current migrations to a database whose venues table exists (after an
/// older version of the extension): `ALTER EXTENSION ... UPDATE` is in migration 001.
pub async fn migrate_from_upgrade(conn: &mut PgConnection) -> Result<()> {
    let _one_at_a_time = MIGRATING.lock().await;
    for (name, sql) in migrations()? {
        conn.execute(sql.as_str())
            .await
            .with_context(|| format!("migration {name}"))?;
    }
    Ok(())
}

fn migrations() -> Result<Vec<(String, String)>> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../sql");
    let mut files: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|f| Ok((f.display().to_string(), std::fs::read_to_string(&f)?)))
        .collect()
}

/// Replaces the venues table's rows with a generated dataset (COPY, in chunks).
pub async fn seed(url: &str, shape: &Shape, progress: bool) -> Result<()> {
    let mut conn = PgConnection::connect(url).await?;
    migrate(&mut conn).await?;
    conn.execute("TRUNCATE venues").await?;
    // Bulk load without the enqueue trigger (queue with the scan afterwards).
    conn.execute("SET session_replication_role = replica")
        .await?;
    // Maintaining the GIN index row by row makes a large load several times slower: drop
    // it (if the fixture made it) and build it once at the end.
    let gin: Option<String> = sqlx::query_scalar(
        "SELECT pg_get_indexdef(indexrelid) FROM pg_index
          WHERE indrelid = 'venues'::regclass
            AND indexrelid = to_regclass('venues_venue_images_gin')",
    )
    .fetch_optional(&mut conn)
    .await?;
    if gin.is_some() {
        conn.execute("DROP INDEX venues_venue_images_gin").await?;
    }
    let start = Instant::now();
    let chunk = 2_000u64;
    let mut from = 1u64;
    while from <= shape.venues {
        let to = (from + chunk).min(shape.venues + 1);
        let rows = copy_rows(shape, from, to);
        let mut copy = conn
            .copy_in_raw("COPY venues (id, name, slug, city_id, venue_images) FROM STDIN")
            .await?;
        copy.send(rows.as_bytes()).await?;
        copy.finish().await?;
        if progress {
            eprint!("\r    seeded {:>7}/{} venues", to - 1, shape.venues);
            let _ = std::io::stderr().flush();
        }
        from = to;
    }
    conn.execute(
        "SELECT setval(pg_get_serial_sequence('venues', 'id'), (SELECT max(id) FROM venues))",
    )
    .await?;
    conn.execute("RESET session_replication_role").await?;
    if let Some(def) = gin {
        conn.execute(def.as_str()).await?;
    }
    conn.execute("VACUUM ANALYZE venues").await?;
    if progress {
        eprintln!(
            "\r    seeded {} venues in {:.1}s",
            shape.venues,
            start.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
