//! The commands behind the CLI.

use crate::cli::{Cli, Command, ImageKitArgs, LogFormat, RunArgs, WorkerArgs};
use crate::fetch::{FetchConfig, Fetcher};
use crate::imagekit::{ImageKit, ImageKitConfig};
use crate::metrics::{self, Metrics, StateLabel};
use crate::progress::Reporter;
use crate::queue::{BreakdownRow, DbError, Queue, Summary};
use crate::redact::redact_text;
use crate::schedule;
use crate::worker::{self, Services, Silent, WorkerConfig};
use std::sync::Arc;
use std::time::Duration;
use tracing::{error, info, warn};

/// A command's failure: message for the user and the exit code.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct AppError {
    /// What went wrong (secrets redacted).
    pub message: String,
    /// Process exit code.
    pub code: i32,
}

impl AppError {
    fn new(message: impl Into<String>) -> Self {
        AppError {
            message: message.into(),
            code: 1,
        }
    }
}

impl From<crate::queue::DbError> for AppError {
    fn from(e: crate::queue::DbError) -> Self {
        AppError::new(e.to_string())
    }
}

/// The migrations shipped in the binary (`sql/`), applied in order.
pub const MIGRATIONS: &[(&str, &str)] = &[
    (
        "001_enable_venue_images.sql",
        include_str!("../../sql/001_enable_venue_images.sql"),
    ),
    (
        "002_uploader_role.sql",
        include_str!("../../sql/002_uploader_role.sql"),
    ),
    (
        "003_enqueue_trigger.sql",
        include_str!("../../sql/003_enqueue_trigger.sql"),
    ),
];

/// Sets up logging on stderr.
pub fn init_logging(format: LogFormat, filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Json => builder.json().with_current_span(false).init(),
        LogFormat::Text => builder.with_target(false).init(),
    }
}

fn database_url(cli: &Cli) -> Result<String, AppError> {
    cli.database_url
        .clone()
        .ok_or_else(|| AppError::new("DATABASE_URL is not set (or pass --database-url)"))
}

fn worker_id(args: &WorkerArgs) -> String {
    args.worker_id.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "uploader".into());
        format!(
            "{host}-{}-{:04x}",
            std::process::id(),
            rand::random::<u16>()
        )
    })
}

fn imagekit(args: &ImageKitArgs) -> Result<ImageKit, AppError> {
    let key = args
        .imagekit_private_key
        .clone()
        .filter(|k| !k.is_empty())
        .ok_or_else(|| {
            AppError::new("IMAGEKIT_PRIVATE_KEY is not set (or pass --imagekit-private-key)")
        })?;
    ImageKit::new(ImageKitConfig {
        upload_url: args.imagekit_upload_url.clone(),
        private_key: key,
        timeout: Duration::from_secs(args.upload_timeout.max(1)),
        ..ImageKitConfig::default()
    })
    .map_err(|e| AppError::new(format!("ImageKit client: {e}")))
}

fn services(args: &WorkerArgs) -> Result<Services, AppError> {
    let fetcher = Fetcher::new(FetchConfig {
        connect_timeout: Duration::from_secs(args.connect_timeout.max(1)),
        total_timeout: Duration::from_secs(args.download_timeout.max(1)),
        max_bytes: args.max_image_mb.max(1) * 1024 * 1024,
        max_redirects: args.max_redirects,
        allow_loopback: args.allow_loopback,
        ..FetchConfig::default()
    })
    .map_err(|e| AppError::new(format!("download client: {e}")))?;
    Ok(Services {
        fetcher,
        imagekit: imagekit(&args.imagekit)?,
    })
}

fn worker_config(args: &WorkerArgs, venue: Option<i64>, drain: bool) -> WorkerConfig {
    WorkerConfig {
        worker_id: worker_id(args),
        concurrency: args.concurrency.clamp(1, 1000),
        lease: args.lease(),
        poll: Duration::from_millis(args.poll_ms.max(50)),
        grace: Duration::from_secs(args.shutdown_grace),
        flush_window: Duration::from_millis(args.writeback_ms.min(10_000)),
        venue,
        drain,
        default_pause: Duration::from_secs(args.default_pause.max(1)),
        linger: Duration::from_secs(args.linger),
    }
}

async fn connect(cli: &Cli, args: Option<&WorkerArgs>) -> Result<Queue, AppError> {
    let url = database_url(cli)?;
    let sidecar = matches!(cli.command, Command::Run(_));
    if let Err(e) = Queue::probe(&url).await {
        let message = redact_text(&e.to_string(), &[]);
        if !sidecar {
            return Err(AppError::new(message));
        }
        // The sidecar starts anyway and keeps retrying: the database may come up later.
        warn!(error = %message, "database not reachable yet; retrying in the background");
    }
    let pool = args
        .map(|a| a.concurrency as u32 + 4)
        .unwrap_or(4)
        .clamp(4, 64);
    Queue::connect(&url, pool, args.and_then(|a| a.folder_base.clone()))
        .await
        .map_err(|e| AppError::new(redact_text(&e.to_string(), &[])))
}

async fn apply_rates(queue: &Queue, args: &WorkerArgs) -> Result<(), AppError> {
    Ok(set_rates(queue, args).await?)
}

async fn set_rates(queue: &Queue, args: &WorkerArgs) -> Result<(), DbError> {
    for (provider, rate) in &args.provider_rates {
        queue.set_rate(provider, *rate).await?;
        info!(provider = %provider, per_second = rate, "provider rate set");
    }
    Ok(())
}

/// SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(_) => {
                        let _ = ctrl_c.await;
                        return;
                    }
                };
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = ctrl_c.await;
        }
        info!("shutdown requested: no new claims; finishing in-flight images");
    }
}

/// Runs a command; returns the exit code.
pub async fn main(cli: Cli) -> Result<i32, AppError> {
    match &cli.command {
        Command::Run(args) => run(&cli, args).await,
        Command::Once(args) => drain(&cli, args, None).await,
        Command::Retry { venue, worker } => {
            let queue = connect(&cli, Some(worker)).await?;
            let n = queue.enqueue_venue(*venue).await?;
            info!(venue_id = venue, retryable = n, "venue queued");
            if n == 0 {
                eprintln!("venue {venue} has no retryable images");
                return Ok(0);
            }
            drain(&cli, worker, Some(*venue)).await
        }
        Command::Enqueue { venue } => {
            let queue = connect(&cli, None).await?;
            let n = queue.enqueue_venue(*venue).await?;
            println!("venue {venue}: {n} retryable image(s) due now");
            Ok(0)
        }
        Command::Scan => {
            let queue = connect(&cli, None).await?;
            let r = queue.scan().await?;
            println!(
                "transient_queued {}  permanent_logged {}  ambiguous_skipped {}  finalized {}  errors {}  ({:.0} ms)",
                r.transient_queued, r.permanent_logged, r.ambiguous_skipped, r.finalized, r.errors, r.elapsed_ms
            );
            Ok(0)
        }
        Command::Stats { json } => {
            let queue = connect(&cli, None).await?;
            let (summary, breakdown) = queue.stats().await.map_err(|e| {
                if e.is_permission_error() {
                    AppError::new(format!(
                        "{e}\n(stats read the venues table: use a role that can SELECT it)"
                    ))
                } else {
                    AppError::from(e)
                }
            })?;
            let depth = queue.depth(None).await.unwrap_or_default();
            if *json {
                let v = serde_json::json!({"summary": summary, "breakdown": breakdown,
                    "queue": depth.iter().map(|(s, n)| (s.clone(), *n)).collect::<std::collections::BTreeMap<_, _>>()});
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            } else {
                print!("{}", render_stats(&summary, &breakdown, &depth));
            }
            Ok(0)
        }
        Command::Migrate => {
            let queue = connect(&cli, None).await?;
            for (name, sql) in MIGRATIONS {
                queue
                    .execute_script(sql)
                    .await
                    .map_err(|e| AppError::new(format!("{name}: {e}")))?;
                println!("applied {name}");
            }
            Ok(0)
        }
        Command::Check {
            imagekit: ik,
            skip_imagekit,
        } => {
            let queue = connect(&cli, None).await?;
            let mut ok = true;
            match queue.check().await {
                Ok(notes) => notes.iter().for_each(|n| println!("ok   {n}")),
                Err(e) => {
                    ok = false;
                    println!("FAIL {e}");
                }
            }
            if *skip_imagekit {
                println!("skip ImageKit credentials");
            } else {
                match imagekit(ik) {
                    Ok(client) => match client.check_credentials().await {
                        Ok(()) => println!(
                            "ok   ImageKit accepted the private key ({})",
                            ik.imagekit_upload_url
                        ),
                        Err(f) => {
                            ok = false;
                            println!("FAIL ImageKit: {f}");
                        }
                    },
                    Err(e) => {
                        ok = false;
                        println!("FAIL {e}");
                    }
                }
            }
            Ok(if ok { 0 } else { 1 })
        }
    }
}

async fn run(cli: &Cli, args: &RunArgs) -> Result<i32, AppError> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let stopped = || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let services = services(&args.worker)?;
    let queue = connect(cli, Some(&args.worker)).await?;
    // A sidecar may start while the database restarts: keep trying, like the worker does.
    let mut backoff = Duration::from_millis(250);
    loop {
        match set_rates(&queue, &args.worker).await {
            Ok(()) => break,
            Err(e) if !e.is_transient() => return Err(e.into()),
            Err(e) => {
                warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "setting provider rates failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stopped() => return Ok(0),
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
    let cfg = worker_config(&args.worker, None, false);
    let metrics = Arc::new(Metrics::new());
    if let Some(addr) = args.metrics_addr {
        let bound = metrics::serve(addr, metrics.clone(), stopped())
            .await
            .map_err(|e| AppError::new(format!("metrics server on {addr}: {e}")))?;
        info!(addr = %bound, "serving /healthz and /metrics");
    }
    if let Some(expr) = &args.scan_schedule {
        let cron = schedule::parse(expr).map_err(AppError::new)?;
        tokio::spawn(schedule::run(queue.clone(), cron, stop_rx.clone()));
        info!(schedule = %expr, "scheduled cleanup scan");
    }
    tokio::spawn(poll_depth(queue.clone(), metrics.clone(), stop_rx.clone()));
    info!(worker = %cfg.worker_id, concurrency = cfg.concurrency, lease_s = cfg.lease.as_secs(), "uploader running");
    let summary = worker::run(queue, services, metrics, cfg, Arc::new(Silent), stopped()).await?;
    info!(claimed = summary.claimed, released = summary.released, statuses = ?summary.statuses, "uploader stopped");
    if let Some(f) = summary.fatal {
        error!("{f}");
        return Ok(3);
    }
    Ok(0)
}

async fn drain(cli: &Cli, args: &WorkerArgs, venue: Option<i64>) -> Result<i32, AppError> {
    let queue = connect(cli, Some(args)).await?;
    apply_rates(&queue, args).await?;
    let services = services(args)?;
    let cfg = worker_config(args, venue, true);
    let due: i64 = queue
        .depth(venue)
        .await?
        .iter()
        .filter(|(s, _)| s == "due")
        .map(|(_, n)| n)
        .sum();
    eprintln!(
        "{due} image(s) due{}",
        venue.map(|v| format!(" for venue {v}")).unwrap_or_default()
    );
    let reporter = Arc::new(Reporter::new(due as u64));
    let summary = worker::run(
        queue.clone(),
        services,
        Arc::new(Metrics::new()),
        cfg,
        reporter.clone(),
        shutdown_signal(),
    )
    .await?;
    reporter.finish();
    if summary.released > 0 {
        warn!(
            released = summary.released,
            "some images were released unattempted"
        );
    }
    if let Some(f) = summary.fatal {
        eprintln!("stopped: {f}");
        return Ok(3);
    }
    Ok(0)
}

async fn poll_depth(queue: Queue, m: Arc<Metrics>, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        if let Ok(depth) = queue.depth(None).await {
            m.db_ok();
            for state in ["due", "waiting", "leased", "paused"] {
                let n = depth
                    .iter()
                    .find(|(s, _)| s == state)
                    .map(|(_, n)| *n)
                    .unwrap_or(0);
                m.queue_depth
                    .get_or_create(&StateLabel {
                        state: state.into(),
                    })
                    .set(n);
            }
        }
        if let Ok(paused) = queue.paused_providers().await {
            m.paused.clear();
            for p in paused {
                m.paused
                    .get_or_create(&crate::metrics::ProviderLabel { provider: p })
                    .set(1);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(15)) => {}
            _ = stop.changed() => return,
        }
    }
}

/// The statistics as text tables.
pub fn render_stats(s: &Summary, breakdown: &[BreakdownRow], depth: &[(String, i64)]) -> String {
    let mut out = String::new();
    out.push_str("Summary\n");
    for (k, v) in [
        (
            "venues with failures",
            s.total_venues_with_failures.to_string(),
        ),
        ("failed images", s.total_failed_images.to_string()),
        (
            "uploaded images (of those venues)",
            s.total_uploaded_images.to_string(),
        ),
        (
            "average failure rate %",
            format!("{:.1}", s.average_failure_rate),
        ),
        (
            "venues with transient failures",
            s.venues_with_transient.to_string(),
        ),
        (
            "venues with permanent failures",
            s.venues_with_permanent.to_string(),
        ),
        (
            "venues with ambiguous failures",
            s.venues_with_ambiguous.to_string(),
        ),
        ("venues scanned", s.venues_scanned.to_string()),
    ] {
        out.push_str(&format!("  {k:<36} {v:>10}\n"));
    }
    if !depth.is_empty() {
        let q: Vec<String> = depth.iter().map(|(s, n)| format!("{s} {n}")).collect();
        out.push_str(&format!("  {:<36} {:>10}\n", "retry queue", q.join(", ")));
    }
    out.push_str("\nFailure breakdown\n");
    let rows: Vec<[String; 4]> = breakdown
        .iter()
        .map(|r| {
            [
                r.provider.clone().unwrap_or_else(|| "(none)".into()),
                r.error_type.clone().unwrap_or_else(|| "(none)".into()),
                r.error_class.clone(),
                r.count.to_string(),
            ]
        })
        .collect();
    let head = ["provider", "error_type", "class", "count"];
    let mut w = head.map(str::len);
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.len());
        }
    }
    let line = |r: [&str; 4]| {
        format!(
            "  {:<a$}  {:<b$}  {:<c$}  {:>d$}\n",
            r[0],
            r[1],
            r[2],
            r[3],
            a = w[0],
            b = w[1],
            c = w[2],
            d = w[3]
        )
    };
    out.push_str(&line(head));
    for r in &rows {
        out.push_str(&line([&r[0], &r[1], &r[2], &r[3]]));
    }
    out
}
