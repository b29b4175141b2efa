//! A world for end-to-end tests: a throwaway database with the extension and the
//! migrations, a fake ImageKit and a fake provider, logins for the extension's roles, and
//! helpers to run the uploader binary against them.

use crate::dataset::{fake_url, FakeRoute};
use crate::db::TestDb;
use crate::fakes::{FakeImageKit, FakeProvider, ProviderConfig};
use crate::sidecar::{self, Sidecar};
use anyhow::{Context, Result};
use serde_json::{json, Value};
use std::time::Duration;

pub const GOOGLE_KEY: &str = "DEMOSECRETKEY42";
pub const IK_KEY: &str = "private_e2e_SECRET_ik_key";

pub struct World {
    pub db: TestDb,
    /// The database as a login with venue_image_uploader (what the sidecar uses).
    pub uploader_url: String,
    /// ... with venue_image_admin (operators' commands).
    pub admin_url: String,
    pub ik: FakeImageKit,
    pub provider: FakeProvider,
    pub dir: tempdir::Dir,
}

pub mod tempdir {
    /// A scratch directory removed on drop.
    pub struct Dir(pub std::path::PathBuf);
    impl Dir {
        pub fn new(tag: &str) -> Dir {
            let p = std::env::temp_dir().join(format!(
                "vi-e2e-{tag}-{}-{}",
                std::process::id(),
                rand::random::<u32>()
            ));
            std::fs::create_dir_all(&p).unwrap();
            Dir(p)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            if !std::thread::panicking() {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }
}

impl World {
    pub async fn new(tag: &str, provider_cfg: ProviderConfig) -> Result<World> {
        let db = TestDb::new(tag).await?;
        db.quick_retries().await?;
        let ik = FakeImageKit::with_key(IK_KEY, Duration::ZERO).await?;
        let provider = FakeProvider::start(provider_cfg).await?;
        db.unlimited_rates().await?;
        db.providers_healthy().await?;
        let uploader_url = db.login_url("venue_image_uploader").await?;
        let admin_url = db.login_url("venue_image_admin").await?;
        Ok(World {
            uploader_url,
            admin_url,
            db,
            ik,
            provider,
            dir: tempdir::Dir::new(tag),
        })
    }

    /// The sidecar's environment: it connects as a venue_image_uploader login.
    pub fn env(&self) -> Vec<(String, String)> {
        self.env_as(&self.uploader_url)
    }

    pub fn env_as(&self, database_url: &str) -> Vec<(String, String)> {
        sidecar::env(database_url, &self.ik.upload_url(), IK_KEY)
    }

    pub fn spawn(&self, name: &str, args: &[&str]) -> Result<Sidecar> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        Sidecar::spawn(&args, &self.env(), &self.dir.0.join(format!("{name}.log")))
    }

    pub async fn images(&self, venue: i64) -> Result<Vec<Value>> {
        let v: Value = sqlx::query_scalar("SELECT venue_images FROM venues WHERE id = $1")
            .bind(venue)
            .fetch_one(&self.db.pool)
            .await?;
        Ok(v.as_array().cloned().unwrap_or_default())
    }

    pub async fn insert_venue(&self, slug: &str, images: &[Value]) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "INSERT INTO venues (name, slug, venue_images) VALUES ($1, $2, $3) RETURNING id",
        )
        .bind(format!("Venue {slug}"))
        .bind(slug)
        .bind(Value::Array(images.to_vec()))
        .fetch_one(&self.db.pool)
        .await?)
    }

    /// Inserts venue `slug` with one failed image, `name` of `provider`, which the fake
    /// provider serves; its id.
    pub async fn insert_one_failed(&self, slug: &str, provider: &str, name: &str) -> Result<i64> {
        let image = failed(
            &self.provider.base_url(),
            provider,
            FakeRoute::Image,
            name,
            0,
        );
        self.insert_venue(slug, &[image]).await
    }

    /// Whether every image of the venue has this status.
    pub async fn all_are(&self, venue: i64, status: &str) -> Result<bool> {
        Ok(self
            .images(venue)
            .await?
            .iter()
            .all(|i| i["upload_status"] == status))
    }

    /// Every log line of every uploader of this test.
    pub fn logs(&self) -> String {
        let mut all = String::new();
        for e in std::fs::read_dir(&self.dir.0).unwrap().flatten() {
            all.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
        }
        all
    }

    pub async fn finish(self) -> Result<()> {
        self.db.drop().await
    }
}

/// A failed image as the application wrote it, with keys the uploader must not touch.
pub fn failed(base: &str, provider: &str, route: FakeRoute, name: &str, n: usize) -> Value {
    let url = fake_url(base, provider, route, name);
    json!({
        "provider": provider,
        "provider_url": url,
        "url": url,
        "upload_status": "failed",
        "retry_count": 0,
        "error_details": {"error_type": "network_timeout", "status_code": null, "error": "timeout"},
        "attribution": format!("© photographer {n}"),
        "position": n,
        "width": 1600,
        "custom": {"nested": [1, {"k": name}], "flag": true},
    })
}

/// Runs a one-off command of the uploader binary to completion, as the uploader login.
pub async fn command(w: &World, args: &[&str]) -> Result<(Option<i32>, String)> {
    command_as(w, &w.uploader_url, args).await
}

/// Runs a one-off command connected with `url`.
pub async fn command_as(w: &World, url: &str, args: &[&str]) -> Result<(Option<i32>, String)> {
    let bin = sidecar::uploader_bin()?;
    let env = w.env_as(url);
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(bin)
            .args(&args)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
    })
    .await?
    .context("running the uploader")?;
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    Ok((out.status.code(), text))
}

/// `stats --json`, parsed.
pub async fn stats(w: &World) -> Result<Value> {
    let (code, out) = command(w, &["stats", "--json"]).await?;
    assert_eq!(code, Some(0), "{out}");
    let start = out.find('{').context("no JSON")?;
    Ok(serde_json::from_str(&out[start..])?)
}
