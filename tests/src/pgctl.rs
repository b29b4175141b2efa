//! Private PostgreSQL clusters for the tests that need a server of their own (a standby,
//! a TLS-only server, a primary to restart or to fail over): `initdb` or `pg_basebackup`
//! into a scratch directory, settings appended to `postgresql.conf` (so that they survive
//! a restart), `pg_ctl` to start, stop and promote.
//!
//! The programs come from `PG_BIN` (default /usr/lib/postgresql/15/bin, the major the
//! extension is installed into by scripts/test.sh). PostgreSQL refuses to run as root: when
//! the tests are root, every program runs as the postgres OS user through `sudo`, and the
//! scratch directory belongs to that user.

use anyhow::{bail, ensure, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// PostgreSQL's bin directory: `PG_BIN`, or Debian's PostgreSQL 15.
pub fn pg_bin() -> PathBuf {
    PathBuf::from(std::env::var("PG_BIN").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into()))
}

/// Whether this process is root (PostgreSQL's programs then run as the postgres user).
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// A command that runs `program` as the postgres OS user when we are root, as us otherwise.
pub fn as_postgres(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("sudo");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

/// Runs a PostgreSQL program of [`pg_bin`] (as the postgres OS user when we are root);
/// its standard output.
pub fn pg(program: &str, args: &[&str]) -> Result<String> {
    pg_in(&pg_bin(), program, args)
}

/// Runs a PostgreSQL program of the bin directory `dir` (as the postgres OS user when we
/// are root); its standard output.
pub fn pg_in(dir: &Path, program: &str, args: &[&str]) -> Result<String> {
    let bin = dir.join(program);
    let out = as_postgres(&bin)
        .args(args)
        .output()
        .with_context(|| format!("running {}", bin.display()))?;
    if !out.status.success() {
        bail!(
            "{program} {} failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Gives `path` to the postgres OS user (when we are root; nothing otherwise).
pub fn give_to_postgres(path: &Path) -> Result<()> {
    if is_root() {
        let st = Command::new("chown")
            .arg("postgres:postgres")
            .arg(path)
            .status()?;
        ensure!(st.success(), "chown postgres {} failed", path.display());
    }
    Ok(())
}

/// A port nobody listens on at this moment, on 127.0.0.1.
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A path as text (the programs take their paths as arguments).
pub fn path(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

/// A scratch directory for a cluster or a server program, readable and writable by the
/// postgres OS user; removed on drop unless the test failed (then kept for its logs).
pub struct Scratch(PathBuf);

impl Scratch {
    /// `$TMPDIR/vi-<tag>-<pid>-<random>`.
    pub fn new(tag: &str) -> Result<Scratch> {
        let dir = std::env::temp_dir().join(format!(
            "vi-{tag}-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir)?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
        give_to_postgres(&dir)?;
        Ok(Scratch(dir))
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A private cluster on 127.0.0.1 and a free port, with its Unix socket in its scratch
/// directory. Stopped (immediately) and removed on drop.
pub struct Cluster {
    /// Its port.
    pub port: u16,
    bin: PathBuf,
    data: PathBuf,
    log: PathBuf,
    // Last: the directory goes after the server is stopped.
    scratch: Scratch,
}

/// Settings every private cluster gets: fast, small, local.
const BASE_SETTINGS: &[(&str, &str)] = &[
    ("listen_addresses", "'127.0.0.1'"),
    ("fsync", "off"),
    ("full_page_writes", "off"),
    ("max_connections", "100"),
    ("shared_buffers", "32MB"),
    ("shared_preload_libraries", "''"),
    // Who, where from (`[local]` or `127.0.0.1(port)`), for the tests that read the log.
    ("log_line_prefix", "'%m [%p] %q%u@%d %r '"),
];

impl Cluster {
    /// `initdb` (trust authentication, UTF-8, the C.UTF-8 locale) with `settings`, not
    /// started: the caller may still write files into [`Cluster::data`] (certificates,
    /// `pg_hba.conf`), then [`Cluster::start`].
    pub fn create(tag: &str, settings: &[(&str, &str)]) -> Result<Cluster> {
        Cluster::create_in(&pg_bin(), tag, settings)
    }

    /// [`Cluster::create`] with the programs of the bin directory `bin`.
    pub fn create_in(bin: &Path, tag: &str, settings: &[(&str, &str)]) -> Result<Cluster> {
        let scratch = Scratch::new(tag)?;
        let data = scratch.path().join("data");
        pg_in(
            bin,
            "initdb",
            &[
                "-D",
                path(&data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ],
        )?;
        let c = Cluster {
            port: free_port()?,
            bin: bin.to_path_buf(),
            log: scratch.path().join("server.log"),
            data,
            scratch,
        };
        c.configure(BASE_SETTINGS)?;
        c.configure(settings)?;
        Ok(c)
    }

    /// [`Cluster::create`] and [`Cluster::start`].
    pub fn init(tag: &str, settings: &[(&str, &str)]) -> Result<Cluster> {
        let c = Cluster::create(tag, settings)?;
        c.start()?;
        Ok(c)
    }

    /// A streaming hot standby of the server at `host:port` (`pg_basebackup -R` as
    /// postgres, with an immediate checkpoint), started with `settings` on a port of its
    /// own.
    pub fn standby_of(
        tag: &str,
        host: &str,
        port: u16,
        settings: &[(&str, &str)],
    ) -> Result<Cluster> {
        let scratch = Scratch::new(tag)?;
        let data = scratch.path().join("data");
        pg(
            "pg_basebackup",
            &[
                "-h",
                host,
                "-p",
                &port.to_string(),
                "-U",
                "postgres",
                "-D",
                path(&data),
                "-R",
                "-X",
                "stream",
                // An immediate checkpoint: the default spreads it over minutes.
                "--checkpoint=fast",
            ],
        )?;
        let c = Cluster {
            port: free_port()?,
            bin: pg_bin(),
            log: scratch.path().join("server.log"),
            data,
            scratch,
        };
        // The primary's postgresql.conf came along: what is appended here wins.
        c.configure(BASE_SETTINGS)?;
        c.configure(&[("hot_standby", "on")])?;
        c.configure(settings)?;
        c.start()?;
        Ok(c)
    }

    /// Appends settings to `postgresql.conf` (the last line for a name wins); the port and
    /// the socket directory are always this cluster's. Takes effect at the next start
    /// (or reload, for the settings that allow it).
    pub fn configure(&self, settings: &[(&str, &str)]) -> Result<()> {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(self.data.join("postgresql.conf"))?;
        for (name, value) in settings {
            writeln!(f, "{name} = {value}")?;
        }
        writeln!(f, "port = {}", self.port)?;
        writeln!(
            f,
            "unix_socket_directories = '{}'",
            path(self.scratch.path())
        )?;
        Ok(())
    }

    /// Replaces `pg_hba.conf` (read at start and reload).
    pub fn write_hba(&self, text: &str) -> Result<()> {
        std::fs::write(self.data.join("pg_hba.conf"), text)?;
        Ok(())
    }

    /// Starts the server and waits until it accepts connections.
    pub fn start(&self) -> Result<()> {
        pg_in(
            &self.bin,
            "pg_ctl",
            &[
                "-D",
                path(&self.data),
                "-l",
                path(&self.log),
                "-w",
                "-t",
                "60",
                "start",
            ],
        )
        .map(drop)
        .with_context(|| format!("server log:\n{}", self.log_tail(30)))
    }

    /// Stops the server: `mode` is `smart`, `fast` or `immediate`.
    pub fn stop(&self, mode: &str) -> Result<()> {
        pg_in(
            &self.bin,
            "pg_ctl",
            &["-D", path(&self.data), "-m", mode, "-w", "-t", "60", "stop"],
        )
        .map(drop)
    }

    /// Promotes a standby and waits until it accepts writes.
    pub fn promote(&self) -> Result<()> {
        pg_in(
            &self.bin,
            "pg_ctl",
            &["-D", path(&self.data), "-w", "-t", "60", "promote"],
        )
        .map(drop)
    }

    /// Its data directory (owned by the postgres OS user).
    pub fn data(&self) -> &Path {
        &self.data
    }

    /// The bin directory of its programs.
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// Its scratch directory (the socket, the log, the data directory).
    pub fn dir(&self) -> &Path {
        self.scratch.path()
    }

    /// `postgres://user@127.0.0.1:port/database` (no TLS settings, no password).
    pub fn url(&self, user: &str, database: &str) -> String {
        format!("postgres://{user}@127.0.0.1:{}/{database}", self.port)
    }

    /// Connection options over the Unix socket (for the tests' own set-up and checks).
    pub fn socket_options(&self, user: &str, database: &str) -> sqlx::postgres::PgConnectOptions {
        sqlx::postgres::PgConnectOptions::new_without_pgpass()
            .socket(self.scratch.path())
            .port(self.port)
            .username(user)
            .database(database)
            .ssl_mode(sqlx::postgres::PgSslMode::Disable)
    }

    /// The server log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `n` lines of the server log.
    pub fn log_tail(&self, n: usize) -> String {
        crate::sidecar::tail(&self.log, n)
    }

    /// Runs `psql` (as us, over the socket, as the superuser) with `args`; its output.
    pub fn psql(&self, database: &str, args: &[&str]) -> Result<String> {
        let out = Command::new(self.bin.join("psql"))
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(self.scratch.path())
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                database,
            ])
            .args(args)
            .env_remove("PGSSLMODE")
            .output()
            .context("running psql")?;
        ensure!(
            out.status.success(),
            "psql {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = pg_in(
            &self.bin,
            "pg_ctl",
            &["-D", path(&self.data), "-m", "immediate", "-w", "stop"],
        );
    }
}

/// The log file of the server `url` points at, when this process may read it: the
/// logging collector's current file, or what its postmaster's standard error is (a
/// server started with `pg_ctl -l FILE`), found through `/proc` (needs root or the
/// server's OS user). `None` when neither can be found.
pub async fn server_log_file(url: &str) -> Option<PathBuf> {
    use sqlx::Connection;
    let mut c = sqlx::PgConnection::connect(url).await.ok()?;
    let (dir, current, pid): (String, Option<String>, i32) = sqlx::query_as(
        "SELECT current_setting('data_directory'), pg_current_logfile(), pg_backend_pid()",
    )
    .fetch_one(&mut c)
    .await
    .ok()?;
    let _ = c.close().await;
    if let Some(f) = current {
        let p = Path::new(&dir).join(f);
        return p.is_file().then_some(p);
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let ppid: u32 = stat[stat.rfind(')')? + 2..]
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    let target = std::fs::read_link(format!("/proc/{ppid}/fd/2")).ok()?;
    target.is_file().then_some(target)
}
