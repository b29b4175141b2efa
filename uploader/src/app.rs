//! The commands behind the CLI.

use crate::cli::{
    Cli, Command, ImageKitArgs, ImageKitSettingsError, LogFormat, RunArgs, WorkerArgs,
};
use crate::clock::Clock;
use crate::exit::Exit;
use crate::fetch::{FetchConfig, Fetcher};
use crate::imagekit::{ImageKit, ImageKitConfig};
use crate::metrics::{self, Metrics, StateLabel};
use crate::progress::Reporter;
use crate::queue::{BreakdownRow, DbError, Queue, QueueState, Summary, UPLOADER_FUNCTIONS};
use crate::redact::redact_text;
use crate::schedule;
use crate::shutdown::{self, Shutdown, StopReason};
use crate::worker::health::HealthConfig;
use crate::worker::{self, Deps, Progress, Services, Silent, WorkerConfig};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tracing::{debug, error, info, warn};

/// A command's failure: message for the user and the exit status.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct AppError {
    /// What went wrong (secrets redacted).
    pub message: String,
    /// Process exit status.
    pub exit: Exit,
}

impl AppError {
    fn new(message: impl Into<String>) -> Self {
        AppError {
            message: redact_text(&message.into(), &[]),
            exit: Exit::Failure,
        }
    }

    /// A usage error (exit status 2): settings refused before anything starts.
    pub fn usage(message: impl Into<String>) -> Self {
        AppError {
            message: redact_text(&message.into(), &[]),
            exit: Exit::Usage,
        }
    }
}

impl From<ImageKitSettingsError> for AppError {
    fn from(e: ImageKitSettingsError) -> Self {
        match e {
            ImageKitSettingsError::Usage(m) => AppError::usage(m),
            ImageKitSettingsError::Config(m) => AppError::new(m),
        }
    }
}

/// A database error, with a hint at the role it needs when permission was denied.
fn db_error(e: DbError, role: &str) -> AppError {
    if e.is_permission_error() {
        AppError::new(format!(
            "{e}\n(this command needs a login with {role}: GRANT {role} TO <your login>; see sql/002_roles.sql)"
        ))
    } else {
        AppError::new(e.to_string())
    }
}

impl From<DbError> for AppError {
    fn from(e: DbError) -> Self {
        AppError::new(e.to_string())
    }
}

/// The migrations shipped in the binary (`sql/`), applied in order.
pub const MIGRATIONS: &[(&str, &str)] = &[
    (
        "001_enable_venue_images.sql",
        include_str!("../../sql/001_enable_venue_images.sql"),
    ),
    ("002_roles.sql", include_str!("../../sql/002_roles.sql")),
    (
        "003_venues_table.sql",
        include_str!("../../sql/003_venues_table.sql"),
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
    args.check()?;
    let key = args.private_key()?;
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
        linger: Duration::from_secs(args.linger),
        health_refresh: Duration::from_secs(1),
        health: HealthConfig {
            default_pause: Duration::from_secs(args.default_pause.max(1)),
            outage_window: Duration::from_secs(args.outage_window),
            probe_base: Duration::from_secs(args.outage_probe.max(1)),
            probe_max: Duration::from_secs(args.outage_probe_max.max(args.outage_probe.max(1))),
            charge_after: Duration::from_secs(args.outage_charge_after),
        },
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
    Queue::connect(&url, pool)
        .await
        .map_err(|e| AppError::new(e.to_string()))
}

/// SIGTERM or Ctrl-C fires the shutdown.
pub fn on_signals(trigger: shutdown::Trigger) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut term) => {
                    tokio::select! {
                        _ = ctrl_c => {}
                        _ = term.recv() => {}
                    }
                }
                Err(_) => {
                    let _ = ctrl_c.await;
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = ctrl_c.await;
        }
        info!("shutdown requested: no new claims; finishing in-flight images");
        trigger.fire();
        // Keep the trigger alive: dropping it would replace nothing (a reason given
        // first stands), but be explicit.
        std::future::pending::<()>().await;
    });
}

/// Wakes the worker on `NOTIFY venue_image_jobs` (a hint: it also sleeps until the next
/// due time and polls).
fn listen(queue: Queue, wake: Arc<Notify>, shutdown: Shutdown) {
    tokio::spawn(async move {
        loop {
            match sqlx::postgres::PgListener::connect_with(queue.pool()).await {
                Ok(mut l) => {
                    if l.listen("venue_image_jobs").await.is_ok() {
                        loop {
                            tokio::select! {
                                r = l.try_recv() => match r {
                                    Ok(Some(_)) => wake.notify_one(),
                                    _ => break,
                                },
                                _ = shutdown.triggered() => return,
                            }
                        }
                    }
                }
                Err(e) => debug!(error = %e, "LISTEN unavailable; polling"),
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                _ = shutdown.triggered() => return,
            }
        }
    });
}

/// The ImageKit settings a command uses, if any.
fn imagekit_args(command: &Command) -> Option<&ImageKitArgs> {
    match command {
        Command::Run(a) => Some(&a.worker.imagekit),
        Command::Once(a) | Command::Retry { worker: a, .. } => Some(&a.imagekit),
        Command::Check {
            imagekit,
            skip_imagekit: false,
        } => Some(imagekit),
        _ => None,
    }
}

/// Refuses, before anything starts, ImageKit settings that can never be used: an
/// endpoint that would send the key in clear, the key given twice.
pub fn check_settings(cli: &Cli) -> Result<(), AppError> {
    if let Some(ik) = imagekit_args(&cli.command) {
        ik.check()?;
        if let Err(ImageKitSettingsError::Usage(m)) = ik.private_key() {
            return Err(AppError::usage(m));
        }
    }
    Ok(())
}

/// Runs a command; returns the exit status.
pub async fn main(cli: Cli) -> Result<Exit, AppError> {
    check_settings(&cli)?;
    match &cli.command {
        Command::Run(args) => run(&cli, args).await,
        Command::Once(args) => drain(&cli, args, None).await,
        Command::Retry { venue, worker } => {
            let queue = connect(&cli, Some(worker)).await?;
            let n = queue
                .enqueue_venue(*venue)
                .await
                .map_err(|e| db_error(e, "venue_image_uploader"))?;
            info!(venue_id = venue, retryable = n, "venue queued");
            if n == 0 {
                eprintln!("venue {venue} has no retryable images");
                return Ok(Exit::Ok);
            }
            drain(&cli, worker, Some(*venue)).await
        }
        Command::Enqueue { venue } => {
            let queue = connect(&cli, None).await?;
            let n = queue
                .enqueue_venue(*venue)
                .await
                .map_err(|e| db_error(e, "venue_image_uploader"))?;
            println!("venue {venue}: {n} retryable image(s) due now");
            Ok(Exit::Ok)
        }
        Command::Scan => {
            let queue = connect(&cli, None).await?;
            let r = queue
                .scan()
                .await
                .map_err(|e| db_error(e, "venue_image_uploader or venue_image_admin"))?;
            println!(
                "transient_queued {}  permanent_logged {}  ambiguous_skipped {}  finalized {}  errors {}  skipped_elements {}  images_queued {}  ({:.0} ms)",
                r.transient_queued, r.permanent_logged, r.ambiguous_skipped, r.finalized,
                r.errors, r.skipped_elements, r.images_queued, r.elapsed_ms
            );
            Ok(Exit::Ok)
        }
        Command::Stats { json } => {
            let queue = connect(&cli, None).await?;
            let (summary, breakdown) = queue
                .stats()
                .await
                .map_err(|e| db_error(e, "venue_image_reader"))?;
            let depth = queue.depth(None).await.unwrap_or_default();
            if *json {
                let v = serde_json::json!({"summary": summary, "breakdown": breakdown,
                    "queue": depth.iter().map(|(s, n)| (s.as_str(), *n)).collect::<std::collections::BTreeMap<_, _>>()});
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            } else {
                print!("{}", render_stats(&summary, &breakdown, &depth));
            }
            Ok(Exit::Ok)
        }
        Command::Dashboard(args) => crate::dashboard::run(&cli, args).await,
        Command::Migrate => {
            let queue = connect(&cli, None).await?;
            for (name, sql) in MIGRATIONS {
                queue.execute_script(sql).await.map_err(|e| {
                    AppError::new(format!("{name}: {e} (migrations run as a superuser)"))
                })?;
                println!("applied {name}");
            }
            Ok(Exit::Ok)
        }
        Command::Rates { rates } => {
            let queue = connect(&cli, None).await?;
            for (provider, rate) in rates {
                queue
                    .set_rate(provider, *rate)
                    .await
                    .map_err(|e| db_error(e, "venue_image_admin"))?;
                match rate {
                    Some(r) => println!("{provider}: {r}/s"),
                    None => println!("{provider}: built-in default"),
                }
            }
            Ok(Exit::Ok)
        }
        Command::Resume { provider } => {
            let queue = connect(&cli, None).await?;
            let was = queue
                .resume(provider)
                .await
                .map_err(|e| db_error(e, "venue_image_admin"))?;
            println!(
                "{provider}: {}",
                if was { "resumed" } else { "was not paused" }
            );
            Ok(Exit::Ok)
        }
        Command::ForceRetry { venue, url } => {
            let queue = connect(&cli, None).await?;
            let n = queue
                .force_retry(*venue, url.as_deref())
                .await
                .map_err(|e| db_error(e, "venue_image_admin"))?;
            println!("venue {venue}: {n} image(s) queued for one more attempt");
            Ok(Exit::Ok)
        }
        Command::Check {
            imagekit: ik,
            skip_imagekit,
        } => {
            let queue = connect(&cli, None).await?;
            let mut ok = true;
            match queue
                .check(UPLOADER_FUNCTIONS, "venue_image_uploader")
                .await
            {
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
            Ok(if ok { Exit::Ok } else { Exit::Failure })
        }
    }
}

async fn run(cli: &Cli, args: &RunArgs) -> Result<Exit, AppError> {
    let (trigger, shutdown) = shutdown::channel();
    let scheduler_shutdown = trigger.subscribe();
    on_signals(trigger);
    let services = services(&args.worker)?;
    let schedule = match args.scan_schedule.trim() {
        "off" | "" => None,
        expr => Some((
            expr.to_string(),
            schedule::parse(expr).map_err(AppError::new)?,
        )),
    };
    let queue = connect(cli, Some(&args.worker)).await?;
    let cfg = worker_config(&args.worker, None, false);
    let metrics = Arc::new(Metrics::new());
    if let Some(addr) = args.metrics_addr {
        let bound = metrics::serve(addr, metrics.clone(), shutdown.clone())
            .await
            .map_err(|e| AppError::new(format!("metrics server on {addr}: {e}")))?;
        info!(addr = %bound, "serving /healthz and /metrics");
    }
    if let Some((expr, cron)) = schedule {
        tokio::spawn(schedule::run(queue.clone(), cron, scheduler_shutdown));
        info!(schedule = %expr, "scheduled cleanup scan");
    }
    tokio::spawn(poll_depth(queue.clone(), metrics.clone(), shutdown.clone()));
    let wake = Arc::new(Notify::new());
    listen(queue.clone(), wake.clone(), shutdown.clone());
    info!(worker = %cfg.worker_id, concurrency = cfg.concurrency, lease_s = cfg.lease.as_secs(), "uploader running");
    let summary = run_worker(
        queue,
        services,
        metrics,
        cfg,
        Arc::new(Silent),
        shutdown,
        wake,
    )
    .await?;
    info!(claimed = summary.claimed, released = summary.released, statuses = ?summary.statuses, "uploader stopped");
    if let Some(StopReason::Fatal(f)) = &summary.stop {
        error!("{}", f.message);
    }
    Ok(summary.stop.as_ref().map_or(Exit::Ok, StopReason::exit))
}

/// The worker over the real queue and HTTP clients. It rides out a database that is down
/// or restarting: claims and write-backs are retried with backoff.
async fn run_worker(
    queue: Queue,
    services: Services,
    metrics: Arc<Metrics>,
    cfg: WorkerConfig,
    progress: Arc<dyn Progress>,
    shutdown: Shutdown,
    wake: Arc<Notify>,
) -> Result<worker::RunSummary, AppError> {
    worker::run(
        Deps {
            queue: Arc::new(queue),
            transfer: Arc::new(services),
            metrics,
            progress,
            clock: Clock::system(),
            shutdown,
            wake,
        },
        cfg,
    )
    .await
    .map_err(AppError::from)
}

async fn drain(cli: &Cli, args: &WorkerArgs, venue: Option<i64>) -> Result<Exit, AppError> {
    let services = services(args)?;
    let queue = connect(cli, Some(args)).await?;
    let cfg = worker_config(args, venue, true);
    let due: i64 = queue
        .depth(venue)
        .await
        .map_err(|e| db_error(e, "venue_image_uploader"))?
        .iter()
        .filter(|(s, _)| *s == QueueState::Due)
        .map(|(_, n)| n)
        .sum();
    eprintln!(
        "{due} image(s) due{}",
        venue.map(|v| format!(" for venue {v}")).unwrap_or_default()
    );
    let (trigger, shutdown) = shutdown::channel();
    on_signals(trigger);
    let wake = Arc::new(Notify::new());
    listen(queue.clone(), wake.clone(), shutdown.clone());
    let reporter = Arc::new(Reporter::new(due as u64));
    let summary = run_worker(
        queue,
        services,
        Arc::new(Metrics::new()),
        cfg,
        reporter.clone(),
        shutdown,
        wake,
    )
    .await?;
    reporter.finish();
    if summary.released > 0 {
        warn!(
            released = summary.released,
            "some images were given back unattempted (paused provider, outage or shutdown)"
        );
    }
    if let Some(StopReason::Fatal(f)) = &summary.stop {
        eprintln!("stopped: {}", f.message);
    }
    Ok(summary.stop.as_ref().map_or(Exit::Ok, StopReason::exit))
}

async fn poll_depth(queue: Queue, m: Arc<Metrics>, shutdown: Shutdown) {
    loop {
        if let Ok(depth) = queue.depth(None).await {
            m.db_ok();
            for state in QueueState::ALL {
                let n = depth
                    .iter()
                    .find(|(s, _)| *s == state)
                    .map(|(_, n)| *n)
                    .unwrap_or(0);
                m.queue_depth
                    .get_or_create(&StateLabel {
                        state: state.as_str().into(),
                    })
                    .set(n);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(15)) => {}
            _ = shutdown.triggered() => return,
        }
    }
}

/// The statistics as text tables.
pub fn render_stats(
    s: &Summary,
    breakdown: &[BreakdownRow],
    depth: &[(QueueState, i64)],
) -> String {
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
        let q: Vec<String> = depth
            .iter()
            .map(|(s, n)| format!("{} {n}", s.as_str()))
            .collect();
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
