//! Runs the real `venue-image-uploader` binary as a child process (end-to-end tests,
//! chaos tests, the uploader benchmark).

use anyhow::{bail, Context, Result};
/// The signals `Sidecar::signal` sends.
pub use rustix::process::Signal;
use rustix::process::{kill_process, Pid};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The uploader binary: `$VENUE_IMAGE_UPLOADER_BIN`, or `venue-image-uploader` next to
/// the running executable (tests live in `target/<profile>/deps`).
pub fn uploader_bin() -> Result<PathBuf> {
    if let Ok(p) = std::env::var("VENUE_IMAGE_UPLOADER_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe()?;
    for dir in exe.ancestors().skip(1).take(2) {
        let candidate = dir.join("venue-image-uploader");
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!(
        "venue-image-uploader is not built next to {} (run `cargo build --release -p venue-image-uploader` \
         with the same profile, or set VENUE_IMAGE_UPLOADER_BIN)",
        exe.display()
    )
}

/// Waits for a dashboard to log where it listens (`dashboard: http://host:port/`) in
/// `log`, and returns that address without the slash; fails when `exited` reports that
/// the process ended first, or after `limit`.
pub async fn dashboard_url(
    log: &Path,
    limit: Duration,
    mut exited: impl FnMut() -> Result<Option<ExitStatus>>,
) -> Result<String> {
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.starts_with("dashboard: http://")) {
            let url = line.trim_start_matches("dashboard: ").trim_end_matches('/');
            return Ok(url.to_string());
        }
        if let Some(st) = exited()? {
            bail!("the dashboard exited ({st}):\n{text}");
        }
        if start.elapsed() > limit {
            bail!("the dashboard printed no URL within {limit:?}:\n{text}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A running uploader.
pub struct Sidecar {
    child: Child,
    /// Its combined stdout/stderr.
    pub log: PathBuf,
}

impl Sidecar {
    /// Starts `venue-image-uploader ARGS` with `envs`, appending stdout and stderr to `log`.
    pub fn spawn(args: &[String], envs: &[(String, String)], log: &Path) -> Result<Sidecar> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        let child = Command::new(uploader_bin()?)
            .args(args)
            .envs(envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .context("starting venue-image-uploader")?;
        Ok(Sidecar {
            child,
            log: log.to_path_buf(),
        })
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal to this process alone, by the `kill` system call (see
    /// `browser::kill_group` for why not the `kill` program).
    pub fn signal(&self, sig: Signal) -> Result<()> {
        kill_process(Pid::from_child(&self.child), sig)
            .with_context(|| format!("kill -{sig:?} {}", self.pid()))
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) -> Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// Exit status if it has exited.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        Ok(self.child.try_wait()?)
    }

    /// For a dashboard: its address, once it listens ([`dashboard_url`]).
    pub async fn dashboard_url(&mut self, limit: Duration) -> Result<String> {
        let log = self.log.clone();
        dashboard_url(&log, limit, || self.try_wait()).await
    }

    /// Waits up to `limit` for it to exit (polling, async-friendly).
    pub async fn wait_for(&mut self, limit: Duration) -> Result<ExitStatus> {
        let start = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait()? {
                return Ok(st);
            }
            if start.elapsed() > limit {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!(
                    "venue-image-uploader did not exit within {limit:?}; log:\n{}",
                    tail(&self.log, 40)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// CPU time (user + system) and peak RSS of the running process, from /proc.
    pub fn usage(&self) -> Option<(Duration, u64)> {
        proc_usage(self.pid())
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// CPU time and peak RSS (bytes) of a process, from `/proc/<pid>/stat` and `status`.
pub fn proc_usage(pid: u32) -> Option<(Duration, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on Linux.
    let cpu = Duration::from_millis(ticks * 10);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let hwm = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse::<u64>()
        .ok()?;
    Some((cpu, hwm * 1024))
}

/// The last `n` lines of a file.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The `run` arguments of the chaos suites (one process killed and replaced after
/// another): eight transfers, 5-second leases, a claim every 250 ms, outcomes written
/// every 50 ms.
pub const CHAOS_RUN: [&str; 9] = [
    "run",
    "--concurrency",
    "8",
    "--lease-seconds",
    "5",
    "--poll-ms",
    "250",
    "--writeback-ms",
    "50",
];

/// The environment that points an uploader at a database and the fakes.
pub fn env(database_url: &str, upload_url: &str, private_key: &str) -> Vec<(String, String)> {
    [
        ("DATABASE_URL", database_url),
        ("IMAGEKIT_UPLOAD_URL", upload_url),
        ("IMAGEKIT_PRIVATE_KEY", private_key),
        ("VENUE_UPLOADER_ALLOW_LOOPBACK", "true"),
        // The fake ImageKit speaks http on 127.0.0.1.
        ("VENUE_UPLOADER_INSECURE_IMAGEKIT_LOOPBACK", "true"),
        ("VENUE_UPLOADER_LOG_FORMAT", "json"),
        ("VENUE_UPLOADER_LOG", "info"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}
