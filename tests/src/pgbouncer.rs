//! A private PgBouncer (Debian 12's 1.18, `/usr/sbin/pgbouncer`) in transaction mode, in
//! front of a PostgreSQL server: the pooler the uploader must work behind.
//!
//! - `pool_mode = transaction`, a `default_pool_size` smaller than the connections the
//!   sidecars open, `max_client_conn = 200`: every client transaction borrows one of a few
//!   server connections, and the next transaction of the same client may get another.
//! - `auth_type = trust` with an `auth_file` listing the logins it lets in (the server
//!   behind it trusts 127.0.0.1, as the test cluster does).
//! - No `ignore_startup_parameters`: PgBouncer 1.18 refuses a startup parameter it does
//!   not know (sqlx's default `extra_float_digits`, for one), as a production PgBouncer
//!   does. The uploader must connect without any; the tests' own connections through it
//!   use [`PgBouncer::options`], which leaves it out.
//! - It listens on a free 127.0.0.1 port, no Unix socket; its config, log and pid file
//!   are in a scratch directory. PgBouncer refuses to run as root: when the tests are
//!   root, it runs as the postgres OS user. Stopped on drop.

use crate::pgctl::{self, path, Scratch};
use anyhow::{bail, Context, Result};
use sqlx::postgres::PgConnectOptions;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

/// Debian's PgBouncer.
pub const PGBOUNCER: &str = "/usr/sbin/pgbouncer";

/// How the pooler is set up.
#[derive(Debug, Clone)]
pub struct Config {
    /// Server connections per (database, user) pair.
    pub default_pool_size: u32,
    /// Client connections it accepts.
    pub max_client_conn: u32,
    /// The logins it lets in (its `auth_file`).
    pub users: Vec<String>,
    /// `server_round_robin = 1`: idle server connections are handed out in turn rather
    /// than the most recently used first, so that consecutive transactions of one client
    /// land on different server connections whenever the pool has more than one.
    pub server_round_robin: bool,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            default_pool_size: 3,
            max_client_conn: 200,
            users: vec!["postgres".into()],
            server_round_robin: false,
        }
    }
}

/// A running PgBouncer.
pub struct PgBouncer {
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    child: Child,
    log: PathBuf,
    pid_file: PathBuf,
    // Last: the directory goes after the process.
    _scratch: Scratch,
}

impl PgBouncer {
    /// Whether Debian's PgBouncer is installed.
    pub fn available() -> bool {
        std::path::Path::new(PGBOUNCER).is_file()
    }

    /// Starts PgBouncer in front of the server of `server_url` (its host and port; any
    /// database name is passed through) and waits until it accepts connections.
    pub async fn start(server_url: &str, cfg: &Config) -> Result<PgBouncer> {
        if !Self::available() {
            bail!(
                "{PGBOUNCER} is not installed (apt-get install pgbouncer; scripts/lib.sh lists it)"
            );
        }
        let server = url::Url::parse(server_url)?;
        let host = server.host_str().unwrap_or("127.0.0.1").to_string();
        let server_port = server.port().unwrap_or(5432);
        let scratch = Scratch::new("pgbouncer")?;
        let dir = scratch.path();
        let port = pgctl::free_port()?;
        let users: String = cfg
            .users
            .iter()
            .map(|u| format!("\"{u}\" \"\"\n"))
            .collect();
        std::fs::write(dir.join("userlist.txt"), users)?;
        let log = dir.join("pgbouncer.log");
        let pid_file = dir.join("pgbouncer.pid");
        let ini = format!(
            "[databases]\n\
             * = host={host} port={server_port}\n\
             \n\
             [pgbouncer]\n\
             listen_addr = 127.0.0.1\n\
             listen_port = {port}\n\
             unix_socket_dir =\n\
             auth_type = trust\n\
             auth_file = {users}\n\
             pool_mode = transaction\n\
             default_pool_size = {pool}\n\
             min_pool_size = 0\n\
             reserve_pool_size = 0\n\
             max_client_conn = {max_client}\n\
             server_round_robin = {round_robin}\n\
             logfile = {log}\n\
             pidfile = {pid}\n\
             admin_users = postgres\n\
             log_connections = 0\n\
             log_disconnections = 0\n\
             stats_period = 3600\n",
            users = path(&dir.join("userlist.txt")),
            pool = cfg.default_pool_size,
            max_client = cfg.max_client_conn,
            round_robin = u8::from(cfg.server_round_robin),
            log = path(&log),
            pid = path(&pid_file),
        );
        let ini_path = dir.join("pgbouncer.ini");
        std::fs::write(&ini_path, ini)?;
        for f in ["userlist.txt", "pgbouncer.ini"] {
            pgctl::give_to_postgres(&dir.join(f))?;
        }
        let child = pgctl::as_postgres(std::path::Path::new(PGBOUNCER))
            .arg(&ini_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting pgbouncer")?;
        let mut b = PgBouncer {
            port,
            child,
            log,
            pid_file,
            _scratch: scratch,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Ok(b);
            }
            if let Some(st) = b.child.try_wait()? {
                bail!("pgbouncer exited ({st}):\n{}", b.log());
            }
            if Instant::now() > deadline {
                bail!("pgbouncer did not listen within 20 s:\n{}", b.log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `url` with this PgBouncer's host and port instead of the server's.
    pub fn url(&self, url: &str) -> Result<String> {
        let mut u = url::Url::parse(url)?;
        u.set_host(Some("127.0.0.1"))?;
        u.set_port(Some(self.port))
            .map_err(|_| anyhow::anyhow!("cannot set the port of {url}"))?;
        Ok(u.to_string())
    }

    /// Options for the tests' own connections through it: `url` (through this PgBouncer)
    /// without the `extra_float_digits` startup parameter that PgBouncer 1.18 refuses.
    /// Statements sent on them must not be named prepared statements either (use
    /// `sqlx::raw_sql`, or `persistent(false)`).
    pub fn options(&self, url: &str) -> Result<PgConnectOptions> {
        Ok(PgConnectOptions::from_str(&self.url(url)?)?.extra_float_digits(None::<i8>))
    }

    /// `SHOW POOLS` on its admin console: see [`show_pools`].
    pub fn pools(&self) -> Result<Vec<BTreeMap<String, String>>> {
        show_pools(self.port)
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// `SHOW POOLS` on the admin console of the PgBouncer on 127.0.0.1:`port` (through
/// `psql`, as postgres: the console speaks the simple protocol only): one map of column
/// to value per pool.
pub fn show_pools(port: u16) -> Result<Vec<BTreeMap<String, String>>> {
    let out = std::process::Command::new(pgctl::pg_bin().join("psql"))
        .args(["-X", "-A", "-F", "|", "-P", "footer=off", "-h", "127.0.0.1"])
        .args(["-p", &port.to_string(), "-U", "postgres", "-d", "pgbouncer"])
        .args(["-c", "SHOW POOLS"])
        .env_remove("PGSSLMODE")
        .output()
        .context("running psql on PgBouncer's console")?;
    if !out.status.success() {
        bail!("SHOW POOLS: {}", String::from_utf8_lossy(&out.stderr));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split('|').collect();
    Ok(lines
        .map(|l| {
            header
                .iter()
                .zip(l.split('|'))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .collect())
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        // SIGTERM to PgBouncer itself (sudo does not pass on the SIGKILL of Child::kill),
        // then to what we started.
        if let Some(pid) = std::fs::read_to_string(&self.pid_file)
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok())
            .and_then(rustix::process::Pid::from_raw)
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
