//! All configuration: one clap definition; every flag also reads an environment variable.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

const ABOUT: &str =
    "Recovers venue image uploads that failed part-way: claims retryable images from \
the venue_images queue in PostgreSQL, downloads each from its provider, uploads it to ImageKit, \
and writes the outcome back.";

const LONG_ABOUT: &str = "\
Recovers venue image uploads that failed part-way.

The retry queue lives in PostgreSQL (the venue_images extension). This process only calls the
extension's functions: it claims due images with a lease (several uploaders can run at once and
never get the same image), waits for each image's pacing slot (provider rates hold across all
uploaders), downloads the provider URL safely (http/https only, no private addresses, size and
time limits, image type checked by magic bytes), uploads the bytes to ImageKit under a
deterministic name (retries overwrite the same file), and records the outcome. A 429 pauses the
provider for every uploader. The database decides what is retried, when, and when an image
becomes permanently_failed.

Roles (sql/002_roles.sql): run, once, retry, enqueue, scan, check and stats need a login with
venue_image_uploader; rates, resume and force-retry need venue_image_admin; migrate needs a
superuser. Failures that are not the image's fault (429s, a provider or ImageKit that cannot be
reached) pause the provider and give the image back without counting an attempt.";

const EXAMPLES: &str = "\
Examples:
  # one-off: check the setup, queue what the nightly scan finds, drain it with a progress bar
  venue-image-uploader check
  venue-image-uploader scan
  venue-image-uploader once

  # as a sidecar, with metrics; the nightly scan runs at 04:00 UTC in one uploader
  venue-image-uploader run --metrics-addr 0.0.0.0:9187

  # retry one venue now, like the original's retry_failed_only
  venue-image-uploader retry --venue 123

  # operators (a role with venue_image_admin): provider rates, resume, replay
  venue-image-uploader rates google_places=2 foursquare=5 '*'=10
  venue-image-uploader resume --provider google_places
  venue-image-uploader force-retry --venue 123

Environment: DATABASE_URL, IMAGEKIT_PRIVATE_KEY (or IMAGEKIT_PRIVATE_KEY_FILE), and
VENUE_UPLOADER_* for every other flag (see each flag). The private key is never a flag: a
command line is visible to every user of the host. Logs go to stderr; RUST_LOG-style filters
in VENUE_UPLOADER_LOG.";

/// `venue-image-uploader`.
#[derive(Parser, Debug)]
#[command(name = "venue-image-uploader", version, about = ABOUT, long_about = LONG_ABOUT, after_long_help = EXAMPLES)]
pub struct Cli {
    /// PostgreSQL connection URL, with libpq's meanings:
    /// postgres://user@host:port/db?sslmode=verify-full&sslrootcert=/path/ca.pem (also
    /// sslcert, sslkey, application_name). Without it, or for what it leaves out, libpq's
    /// variables apply (PGHOST, PGPORT, PGDATABASE, PGUSER, PGSSLMODE, PGSSLROOTCERT,
    /// PGSSLCERT, PGSSLKEY); the password comes from PGPASSFILE or ~/.pgpass, so it need
    /// not be in the URL. The login needs venue_image_uploader's grants.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, global = true)]
    pub database_url: Option<String>,

    /// Log format on stderr.
    #[arg(long, env = "VENUE_UPLOADER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,

    /// Log filter (e.g. `info`, `venue_image_uploader=debug`).
    #[arg(
        long,
        env = "VENUE_UPLOADER_LOG",
        default_value = "info",
        global = true
    )]
    pub log: String,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Log formats.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run as a sidecar: claim and recover images until SIGTERM.
    Run(RunArgs),
    /// Recover everything due now, then exit (progress bar on a terminal).
    Once(WorkerArgs),
    /// Retry one venue's retryable images now and wait for them (the original's retry_failed_only).
    Retry {
        /// Venue id.
        #[arg(long, env = "VENUE_UPLOADER_VENUE")]
        venue: i64,
        #[command(flatten)]
        worker: WorkerArgs,
    },
    /// Make one venue's retryable images due now (the queue's uploaders will take them).
    Enqueue {
        /// Venue id.
        #[arg(long, env = "VENUE_UPLOADER_VENUE")]
        venue: i64,
    },
    /// Run the nightly cleanup scan now: queue transient failures, finalise hopeless ones.
    Scan,
    /// Print the failure statistics (summary and breakdown).
    Stats {
        /// Print JSON instead of tables.
        #[arg(long, env = "VENUE_UPLOADER_JSON")]
        json: bool,
    },
    /// Apply the SQL migrations shipped with this binary (as a superuser).
    Migrate,
    /// Set providers' shared request rates, PROVIDER=PER_SECOND (`*` is the default;
    /// `inf` for none; `default` for the built-in rate). Needs venue_image_admin.
    Rates {
        /// PROVIDER=PER_SECOND pairs.
        #[arg(required = true, value_parser = parse_rate_setting, env = "VENUE_UPLOADER_RATES", value_delimiter = ',')]
        rates: Vec<(String, Option<f64>)>,
    },
    /// End a provider's pause now (`*`: the global one). Needs venue_image_admin.
    Resume {
        /// Provider.
        #[arg(long, env = "VENUE_UPLOADER_PROVIDER")]
        provider: String,
    },
    /// Queue a venue's failed and permanently failed images (or the one with --url) for
    /// one more attempt, whatever their error and retry count. Needs venue_image_admin.
    ForceRetry {
        /// Venue id.
        #[arg(long, env = "VENUE_UPLOADER_VENUE")]
        venue: i64,
        /// Only the image with this source URL.
        #[arg(long, env = "VENUE_UPLOADER_URL")]
        url: Option<String>,
    },
    /// Serve the web dashboard: failures, recovery over time, venues, and (with
    /// --admin-token-file) actions. DATABASE_URL needs venue_image_reader.
    Dashboard(DashboardArgs),
    /// Verify the database, the extension version, the role's grants and the ImageKit key.
    Check {
        #[command(flatten)]
        imagekit: ImageKitArgs,
        /// Skip the ImageKit credential check.
        #[arg(long, env = "VENUE_UPLOADER_SKIP_IMAGEKIT_CHECK")]
        skip_imagekit: bool,
    },
}

/// `run` options.
#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub worker: WorkerArgs,

    /// Serve /healthz and /metrics (Prometheus) on this address.
    #[arg(long, env = "VENUE_UPLOADER_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,

    /// Run the cleanup scan on this cron schedule (UTC; 5 fields, or 6 with seconds), or
    /// `off`. However many uploaders run, one of them performs each run (the extension's
    /// venue_image_scheduled_scan decides, inside one transaction). If pg_cron runs the
    /// scan in the database instead, pass `off`.
    #[arg(long, env = "VENUE_UPLOADER_SCAN_SCHEDULE")]
    #[arg(default_value = "0 4 * * *")]
    pub scan_schedule: String,
}

/// `dashboard` options.
#[derive(Args, Debug, Clone)]
pub struct DashboardArgs {
    /// Address to serve the dashboard on (loopback by default: put a reverse proxy with
    /// TLS in front of it to share it).
    #[arg(long, env = "VENUE_DASHBOARD_LISTEN", default_value = "127.0.0.1:8780")]
    pub listen: SocketAddr,

    /// Seconds the analytics are cached: the venues table is scanned at most once per
    /// refresh, whatever the number of viewers.
    #[arg(long, env = "VENUE_DASHBOARD_REFRESH", default_value_t = 60)]
    pub refresh: u64,

    /// File holding the admin token. Without it the dashboard is read-only and shows no
    /// action buttons.
    #[arg(long, env = "VENUE_DASHBOARD_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<std::path::PathBuf>,

    /// PostgreSQL URL of a login with venue_image_admin, used only for requests that carry
    /// the admin token.
    #[arg(
        long,
        env = "VENUE_DASHBOARD_ADMIN_DATABASE_URL",
        hide_env_values = true
    )]
    pub admin_database_url: Option<String>,

    /// Another host name the dashboard answers to (repeat it, or separate with commas in
    /// the variable): `name[:port]`, or `https://name[:port]` for the origin browsers see
    /// behind a TLS proxy. It always answers to the listen address (and localhost:<port>
    /// on loopback) and to the IP address a connection arrives on; any other Host gets
    /// 421 (a defence against DNS rebinding), and a POST from another origin 403.
    #[arg(
        long = "allowed-host",
        env = "VENUE_DASHBOARD_ALLOWED_HOSTS",
        value_delimiter = ',',
        value_parser = crate::host::parse_allowed_host
    )]
    pub allowed_hosts: Vec<crate::host::AllowedHost>,
}

/// The environment variable that holds the ImageKit private key. It is the one setting
/// read outside clap ([`ImageKitArgs::private_key`]): a key must never be a flag, since
/// `ps` shows every process's command line to every user of the host.
pub const PRIVATE_KEY_ENV: &str = "IMAGEKIT_PRIVATE_KEY";

/// ImageKit options.
#[derive(Args, Debug, Clone)]
pub struct ImageKitArgs {
    /// File holding the ImageKit private API key (surrounding whitespace is ignored). Or
    /// set IMAGEKIT_PRIVATE_KEY; there is no flag for the key itself, because `ps` shows
    /// command lines to every user of the host. Never logged.
    #[arg(long, env = "IMAGEKIT_PRIVATE_KEY_FILE")]
    pub imagekit_private_key_file: Option<PathBuf>,

    /// ImageKit upload endpoint: https only (the private key is sent with every request),
    /// except for --insecure-imagekit-loopback.
    #[arg(
        long,
        env = "IMAGEKIT_UPLOAD_URL",
        default_value = "https://upload.imagekit.io/api/v1/files/upload"
    )]
    pub imagekit_upload_url: String,

    /// Accept an http:// upload endpoint on a loopback host (127.0.0.0/8, ::1, localhost),
    /// for tests and the demo against a local fake ImageKit: the private key then crosses
    /// the connection in clear. Any other http:// endpoint is refused at start-up.
    #[arg(long, env = "VENUE_UPLOADER_INSECURE_IMAGEKIT_LOOPBACK")]
    pub insecure_imagekit_loopback: bool,

    /// ImageKit request timeout, seconds.
    #[arg(long, env = "VENUE_UPLOADER_UPLOAD_TIMEOUT", default_value_t = 60)]
    pub upload_timeout: u64,
}

/// Options of every command that processes images.
#[derive(Args, Debug, Clone)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub imagekit: ImageKitArgs,

    /// Images processed at once.
    #[arg(long, env = "VENUE_UPLOADER_CONCURRENCY", default_value_t = 8)]
    pub concurrency: usize,

    /// Lease length in seconds (extended while an image is still in flight).
    #[arg(long, env = "VENUE_UPLOADER_LEASE_SECONDS", default_value_t = 120)]
    pub lease_seconds: u64,

    /// Largest image accepted, in MB (ImageKit's free plan: 25).
    #[arg(long, env = "VENUE_UPLOADER_MAX_IMAGE_MB", default_value_t = 25)]
    pub max_image_mb: u64,

    /// Download connect timeout, seconds.
    #[arg(long, env = "VENUE_UPLOADER_CONNECT_TIMEOUT", default_value_t = 5)]
    pub connect_timeout: u64,

    /// Download total timeout, seconds.
    #[arg(long, env = "VENUE_UPLOADER_DOWNLOAD_TIMEOUT", default_value_t = 30)]
    pub download_timeout: u64,

    /// Redirects followed when downloading.
    #[arg(long, env = "VENUE_UPLOADER_MAX_REDIRECTS", default_value_t = 5)]
    pub max_redirects: usize,

    /// Allow downloads from loopback addresses (tests and the demo only).
    #[arg(long, env = "VENUE_UPLOADER_ALLOW_LOOPBACK")]
    pub allow_loopback: bool,

    /// Name of this uploader in leases (default: host-pid-random).
    #[arg(long, env = "VENUE_UPLOADER_WORKER_ID")]
    pub worker_id: Option<String>,

    /// Wake on NOTIFY venue_image_jobs (LISTEN needs a session of its own): `auto` when no
    /// pooler or proxy is between the uploader and the server (the server reports the port
    /// connected to), `off` behind PgBouncer in transaction mode, `on` in session mode.
    /// Without it the uploader polls (--poll-ms).
    #[arg(long, env = "VENUE_UPLOADER_LISTEN", value_enum, default_value_t = crate::db::listen::ListenMode::Auto)]
    pub listen: crate::db::listen::ListenMode,

    /// Longest sleep, in milliseconds, when nothing is due: the uploader sleeps until the
    /// database's next due time (`venue_image_next_due`) or a NOTIFY, and at most this.
    #[arg(long, env = "VENUE_UPLOADER_POLL_MS", default_value_t = 5000)]
    pub poll_ms: u64,

    /// Seconds in-flight work gets to finish after SIGTERM before it is released.
    #[arg(long, env = "VENUE_UPLOADER_SHUTDOWN_GRACE", default_value_t = 25)]
    pub shutdown_grace: u64,

    /// Outcomes are written back in batches within this many milliseconds.
    #[arg(long, env = "VENUE_UPLOADER_WRITEBACK_MS", default_value_t = 100)]
    pub writeback_ms: u64,

    /// For once/retry: also wait for retries that become due within this many seconds
    /// (after a short Retry-After or backoff), instead of exiting when nothing is due.
    #[arg(long, env = "VENUE_UPLOADER_LINGER", default_value_t = 0)]
    pub linger: u64,

    /// Pause after a 429 without a wait hint, seconds.
    #[arg(long, env = "VENUE_UPLOADER_DEFAULT_PAUSE", default_value_t = 60)]
    pub default_pause: u64,

    /// A provider (or ImageKit) with an upload recorded within this many seconds is
    /// reachable: its DNS, connection and timeout failures are charged to the image.
    /// Otherwise they pause it and give the image back unattempted.
    #[arg(long, env = "VENUE_UPLOADER_OUTAGE_WINDOW", default_value_t = 120)]
    pub outage_window: u64,

    /// First probe delay, seconds, of a provider that cannot be reached (doubles).
    #[arg(long, env = "VENUE_UPLOADER_OUTAGE_PROBE", default_value_t = 5)]
    pub outage_probe: u64,

    /// Longest probe delay, seconds.
    #[arg(long, env = "VENUE_UPLOADER_OUTAGE_PROBE_MAX", default_value_t = 60)]
    pub outage_probe_max: u64,

    /// After this many seconds unreachable, network failures are charged to images again
    /// (a host dead that long is the image's problem).
    #[arg(
        long,
        env = "VENUE_UPLOADER_OUTAGE_CHARGE_AFTER",
        default_value_t = 21_600
    )]
    pub outage_charge_after: u64,
}

/// Why the ImageKit settings cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageKitSettingsError {
    /// A usage error: settings that contradict each other or are refused outright.
    #[error("{0}")]
    Usage(String),
    /// The key is missing or its file cannot be read.
    #[error("{0}")]
    Config(String),
}

impl ImageKitArgs {
    /// Checks what can be checked without the key: the upload endpoint is https, or http
    /// to a loopback host with `--insecure-imagekit-loopback`.
    pub fn check(&self) -> Result<(), ImageKitSettingsError> {
        check_upload_url(&self.imagekit_upload_url, self.insecure_imagekit_loopback)
            .map_err(ImageKitSettingsError::Usage)
    }

    /// The private key: from `--imagekit-private-key-file`, or from `IMAGEKIT_PRIVATE_KEY`
    /// (one of them; both is a usage error).
    pub fn private_key(&self) -> Result<String, ImageKitSettingsError> {
        resolve_private_key(
            self.imagekit_private_key_file.as_deref(),
            std::env::var(PRIVATE_KEY_ENV).ok(),
        )
    }
}

/// The private key from a file or the environment's value (see
/// [`ImageKitArgs::private_key`]).
pub fn resolve_private_key(
    file: Option<&Path>,
    env: Option<String>,
) -> Result<String, ImageKitSettingsError> {
    let env = env.filter(|k| !k.trim().is_empty());
    match (file, env) {
        (Some(_), Some(_)) => Err(ImageKitSettingsError::Usage(format!(
            "both {PRIVATE_KEY_ENV} and --imagekit-private-key-file are set: keep one"
        ))),
        (Some(path), None) => read_secret_file(path, "ImageKit private key file")
            .map_err(ImageKitSettingsError::Config),
        (None, Some(key)) => Ok(key.trim().to_string()),
        (None, None) => Err(ImageKitSettingsError::Config(format!(
            "{PRIVATE_KEY_ENV} is not set (or pass --imagekit-private-key-file)"
        ))),
    }
}

/// The secret a file holds (a key, a token), without surrounding whitespace; an error
/// naming the file as `what` when it cannot be read or holds nothing else.
pub fn read_secret_file(path: &Path, what: &str) -> Result<String, String> {
    let raw =
        std::fs::read_to_string(path).map_err(|e| format!("{what} {}: {e}", path.display()))?;
    let secret = raw.trim();
    if secret.is_empty() {
        return Err(format!("{what} {} is empty", path.display()));
    }
    Ok(secret.to_string())
}

/// The upload endpoint must be https: HTTP Basic sends the private key with every
/// request. `http://` is accepted only for a loopback host and only with
/// `insecure_loopback` (`--insecure-imagekit-loopback`).
pub fn check_upload_url(raw: &str, insecure_loopback: bool) -> Result<(), String> {
    let shown = crate::redact::redact_url(raw);
    let url = url::Url::parse(raw)
        .map_err(|e| format!("--imagekit-upload-url {shown:?} is not a URL: {e}"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "--imagekit-upload-url {shown:?} must not carry credentials"
        ));
    }
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    };
    match url.scheme() {
        "https" if url.host().is_some() => Ok(()),
        "http" if insecure_loopback && loopback => Ok(()),
        "http" if insecure_loopback => Err(format!(
            "--insecure-imagekit-loopback allows http:// only to a loopback host (127.0.0.0/8, ::1, localhost), not {shown:?}: use https"
        )),
        "http" => Err(format!(
            "--imagekit-upload-url {shown:?} would send the ImageKit private key in clear: use https (http:// is accepted only for a local fake ImageKit on a loopback host, with --insecure-imagekit-loopback)"
        )),
        _ => Err(format!(
            "--imagekit-upload-url {shown:?} must be an https URL with a host"
        )),
    }
}

/// `provider=rate`, or `provider=default` (the built-in rate).
pub fn parse_rate_setting(s: &str) -> Result<(String, Option<f64>), String> {
    if let Some((p, "default")) = s.split_once('=').map(|(p, r)| (p, r.trim())) {
        if p.trim().is_empty() {
            return Err(format!("empty provider in {s:?}"));
        }
        return Ok((p.trim().to_string(), None));
    }
    parse_rate(s).map(|(p, r)| (p, Some(r)))
}

/// `provider=rate`.
pub fn parse_rate(s: &str) -> Result<(String, f64), String> {
    let (p, r) = s
        .split_once('=')
        .ok_or_else(|| format!("expected PROVIDER=PER_SECOND, got {s:?}"))?;
    let p = p.trim();
    if p.is_empty() {
        return Err(format!("empty provider in {s:?}"));
    }
    let r = match r.trim() {
        "inf" | "infinity" | "unlimited" => f64::INFINITY,
        v => v.parse::<f64>().map_err(|_| format!("bad rate in {s:?}"))?,
    };
    if r.is_nan() || r <= 0.0 {
        return Err(format!("rate must be positive in {s:?}"));
    }
    Ok((p.to_string(), r))
}

impl WorkerArgs {
    /// Lease length.
    pub fn lease(&self) -> Duration {
        Duration::from_secs(self.lease_seconds.clamp(5, 86_400))
    }
}

/// A directory of a test's own under the temporary directory, for files named on the
/// command line (keys, tokens); removed when dropped.
#[cfg(test)]
pub(crate) struct ScratchDir(pub PathBuf);

#[cfg(test)]
impl ScratchDir {
    /// `vi-{name}-{pid}`, created.
    pub(crate) fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("vi-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        ScratchDir(dir)
    }

    /// The file `name` in it, holding `content`.
    pub(crate) fn file(&self, name: &str, content: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, content).unwrap();
        path
    }
}

#[cfg(test)]
impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn rates_parse() {
        assert_eq!(
            parse_rate("google_places=2").unwrap(),
            ("google_places".into(), 2.0)
        );
        assert_eq!(parse_rate("*=inf").unwrap().1, f64::INFINITY);
        assert!(parse_rate("x").is_err());
        assert!(parse_rate("x=0").is_err());
        assert!(parse_rate("=3").is_err());
    }

    #[test]
    fn the_private_key_is_never_a_flag() {
        let parse = |args: &[&str]| {
            Cli::try_parse_from(
                ["venue-image-uploader"]
                    .iter()
                    .chain(args)
                    .copied()
                    .collect::<Vec<_>>(),
            )
        };
        for cmd in [
            &["run"][..],
            &["once"],
            &["retry", "--venue", "1"],
            &["check"],
        ] {
            let mut args = cmd.to_vec();
            args.extend(["--imagekit-private-key", "private_SECRET"]);
            let e = parse(&args).unwrap_err();
            assert_eq!(e.kind(), clap::error::ErrorKind::UnknownArgument, "{cmd:?}");
            let mut args = cmd.to_vec();
            args.extend(["--imagekit-private-key-file", "/run/secrets/ik"]);
            assert!(parse(&args).is_ok(), "{cmd:?}");
        }
        // Nothing in --help offers to take the key on the command line.
        let mut cmd = Cli::command();
        let help = cmd
            .find_subcommand_mut("run")
            .map(|c| c.render_long_help().to_string())
            .unwrap_or_default();
        assert!(help.contains("--imagekit-private-key-file"), "{help}");
        assert!(!help.contains("--imagekit-private-key "), "{help}");
        assert!(!help.contains("--imagekit-private-key <"), "{help}");
    }

    #[test]
    fn the_private_key_comes_from_a_file_or_the_environment() {
        let dir = ScratchDir::new("ik-key");
        let file = dir.file("key", "  private_from_file\n");
        assert_eq!(
            resolve_private_key(Some(&file), None).unwrap(),
            "private_from_file"
        );
        assert_eq!(
            resolve_private_key(None, Some("private_from_env".into())).unwrap(),
            "private_from_env"
        );
        assert!(matches!(
            resolve_private_key(Some(&file), Some("private_from_env".into())),
            Err(ImageKitSettingsError::Usage(_))
        ));
        assert!(matches!(
            resolve_private_key(None, None),
            Err(ImageKitSettingsError::Config(m)) if m.contains("IMAGEKIT_PRIVATE_KEY")
        ));
        assert!(matches!(
            resolve_private_key(None, Some("  ".into())),
            Err(ImageKitSettingsError::Config(_))
        ));
        std::fs::write(&file, "\n").unwrap();
        assert!(matches!(
            resolve_private_key(Some(&file), None),
            Err(ImageKitSettingsError::Config(m)) if m.contains("empty")
        ));
        let missing = dir.0.join("missing");
        assert!(matches!(
            resolve_private_key(Some(&missing), None),
            Err(ImageKitSettingsError::Config(_))
        ));
    }

    #[test]
    fn http_upload_urls_only_to_loopback_and_only_when_asked() {
        // What is said of each URL without --insecure-imagekit-loopback and with it:
        // `None`, accepted; `Some(text)`, refused with a message containing the text.
        let cases: [(Option<&str>, Option<&str>, &[&str]); 3] = [
            (
                None,
                None,
                &[
                    "https://upload.imagekit.io/api/v1/files/upload",
                    "https://127.0.0.1:8443/upload",
                ],
            ),
            (
                Some("in clear"),
                None,
                &[
                    "http://127.0.0.1:41231/api/v1/files/upload",
                    "http://127.8.9.10/x",
                    "http://[::1]:41231/x",
                    "http://localhost:41231/x",
                    "http://LOCALHOST/x",
                ],
            ),
            (
                Some(""),
                Some("loopback"),
                &[
                    "http://upload.imagekit.io/api/v1/files/upload",
                    "http://10.0.0.5/x",
                    "http://[::ffff:127.0.0.1]/x",
                    "http://localhost.evil.example/x",
                    "http://127.0.0.1.nip.io/x",
                ],
            ),
        ];
        for (without, with, urls) in cases {
            for url in urls {
                for (loopback, refusal) in [(false, without), (true, with)] {
                    match (check_upload_url(url, loopback), refusal) {
                        (Ok(()), None) => {}
                        (Err(e), Some(why)) => assert!(e.contains(why), "{url}: {e}"),
                        (got, want) => panic!("{url} (loopback {loopback}): {got:?}, not {want:?}"),
                    }
                }
            }
        }
        for url in [
            "ftp://upload.imagekit.io/x",
            "upload.imagekit.io/x",
            "https://private_k3y:@upload.imagekit.io/x",
            "",
        ] {
            let e = check_upload_url(url, true).unwrap_err();
            assert!(!e.contains("private_k3y"), "{e}");
        }
    }

    #[test]
    fn every_flag_has_an_env_var() {
        fn walk(cmd: &clap::Command) {
            for a in cmd.get_arguments() {
                let id = a.get_id().as_str();
                if ["help", "version"].contains(&id) {
                    continue;
                }
                assert!(
                    a.get_env().is_some(),
                    "--{id} of {} has no env var",
                    cmd.get_name()
                );
            }
            for s in cmd.get_subcommands() {
                walk(s);
            }
        }
        walk(&Cli::command());
    }
}
