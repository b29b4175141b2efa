//! Headless Chromium for browser tests: finds Debian's `chromium` and `chromedriver`,
//! starts chromedriver on a free port with a fresh profile, and gives the WebDriver
//! capabilities to open a session with (the tests drive it with `fantoccini`).
//!
//! Nothing here reaches the network: Chromium runs with background networking, updates,
//! sync and QUIC off, and the tests only open pages on 127.0.0.1.

use anyhow::{bail, Context, Result};
use serde_json::{json, Map, Value};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What to install when the browser is missing.
pub const INSTALL_HINT: &str = "the browser tests need Debian's chromium and chromium-driver: \
     sudo apt-get install -y chromium chromium-driver (or set CHROME_BIN and CHROMEDRIVER)";

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

/// The Chromium binary: `$CHROME_BIN`, else `chromium` on the PATH.
pub fn chromium() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("CHROME_BIN") {
        return Ok(PathBuf::from(p));
    }
    which("chromium")
        .or_else(|| which("chromium-browser"))
        .with_context(|| format!("chromium is not installed: {INSTALL_HINT}"))
}

/// The chromedriver binary: `$CHROMEDRIVER`, else `chromedriver` on the PATH.
pub fn chromedriver() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("CHROMEDRIVER") {
        return Ok(PathBuf::from(p));
    }
    which("chromedriver")
        .or_else(|| Some(PathBuf::from("/usr/lib/chromium/chromedriver")).filter(|p| p.is_file()))
        .with_context(|| format!("chromedriver is not installed: {INSTALL_HINT}"))
}

/// A free TCP port on 127.0.0.1 (free when asked; good enough for a child to bind).
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// A running chromedriver and the profile directory its browsers use.
pub struct Driver {
    child: Child,
    /// Its WebDriver URL (`http://127.0.0.1:PORT`).
    pub url: String,
    /// A fresh Chromium profile, removed on drop.
    pub profile: PathBuf,
    chromium: PathBuf,
}

impl Driver {
    /// Starts chromedriver on a free port and waits until it answers.
    pub async fn start() -> Result<Driver> {
        let chromium = chromium()?;
        let driver = chromedriver()?;
        let port = free_port()?;
        let profile = std::env::temp_dir().join(format!(
            "vi-chromium-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&profile)?;
        let log = std::fs::File::create(profile.with_extension("chromedriver.log"))?;
        // Its own process group: the browsers it starts are in it too, and are ended
        // with it (a test that fails half way leaves no Chromium behind).
        let child = Command::new(&driver)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", driver.display()))?;
        let d = Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
            profile,
            chromium,
        };
        d.wait_ready().await?;
        Ok(d)
    }

    async fn wait_ready(&self) -> Result<()> {
        let client = reqwest::Client::new();
        let start = Instant::now();
        loop {
            if let Ok(r) = client.get(format!("{}/status", self.url)).send().await {
                if let Ok(v) = r.json::<Value>().await {
                    if v["value"]["ready"] == true {
                        return Ok(());
                    }
                }
            }
            if start.elapsed() > Duration::from_secs(20) {
                bail!("chromedriver did not start on {} within 20 s", self.url);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Capabilities for a headless session: the flags for running as root with no
    /// network, a fresh profile, a fixed window size, and the browser's console log kept
    /// (`goog:loggingPrefs`) so that tests can read console errors and CSP violations.
    pub fn capabilities(&self) -> Map<String, Value> {
        let args = [
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--no-default-browser-check".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-extensions".into(),
            "--disable-crash-reporter".into(),
            "--disable-breakpad".into(),
            "--hide-scrollbars".into(),
            "--window-size=1280,900".into(),
            format!("--user-data-dir={}", self.profile.display()),
        ];
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": self.chromium.display().to_string(),
                "args": args,
            },
            "goog:loggingPrefs": { "browser": "ALL" },
        });
        match caps {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The whole group: chromedriver and every browser process it started.
        let _ = kill_group(&self.child);
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
        let _ = std::fs::remove_file(self.profile.with_extension("chromedriver.log"));
    }
}

/// SIGKILL to the process group that `child` leads (it was spawned with
/// `process_group(0)`), by the `killpg` system call.
///
/// Not by running `kill -KILL -<pgid>`: Debian 12's procps `kill` (4.0.2) reads a negative
/// pid after a signal option as `-1`, and `kill(-1, SIGKILL)` as root ends every process
/// on the machine (the CI run and PostgreSQL with it).
pub fn kill_group(child: &Child) -> std::io::Result<()> {
    let leader = rustix::process::Pid::from_child(child);
    rustix::process::kill_process_group(leader, rustix::process::Signal::KILL)?;
    Ok(())
}

/// Where the dashboard tests save screenshots: `target/dashboard-screenshots/` of the
/// workspace (created).
pub fn screenshot_dir() -> Result<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target")
        .join("dashboard-screenshots");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir.canonicalize().unwrap_or(dir))
}

/// Whether a browser console entry is an error: `SEVERE` entries (uncaught errors,
/// failed loads, CSP violations).
pub fn is_error(entry: &Value) -> bool {
    entry["level"].as_str() == Some("SEVERE")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sleeper_group() -> Child {
        Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .expect("spawning sleep")
    }

    #[test]
    fn kill_group_ends_that_group_and_nothing_else() {
        let mut group = sleeper_group();
        // Another group, as the test runner, PostgreSQL and CI are.
        let mut bystander = sleeper_group();
        kill_group(&group).expect("killpg");
        let status = group.wait().expect("reaping the group's leader");
        assert!(!status.success(), "the leader was killed: {status:?}");
        assert!(
            bystander.try_wait().expect("polling").is_none(),
            "a process outside the group must survive"
        );
        bystander.kill().ok();
        bystander.wait().ok();
    }
}
