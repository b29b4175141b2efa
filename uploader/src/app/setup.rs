//! What commands build from the settings: logging, the database connection, the HTTP
//! clients, the worker's settings; and the settings refused before anything starts.

use crate::cli::{Cli, Command, ImageKitArgs, ImageKitSettingsError, LogFormat, WorkerArgs};
use crate::db::{self, Db};
use crate::error::AppError;
use crate::fetch::{FetchConfig, Fetcher};
use crate::imagekit::{ImageKit, ImageKitConfig};
use crate::redact::redact_text;
use crate::worker::health::HealthConfig;
use crate::worker::{Services, WorkerConfig};
use std::time::Duration;
use tracing::warn;

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

/// The database over a pool sized for `args`' concurrency (4 connections without). The
/// target is `DATABASE_URL` and libpq's variables; the sidecar (`run`) starts even when
/// the database is not reachable yet.
pub async fn connect(cli: &Cli, args: Option<&WorkerArgs>) -> Result<Db, AppError> {
    let target = db::target(cli.database_url.as_deref())
        .map_err(|e| AppError::new(redact_text(&e.to_string(), &[])))?;
    let sidecar = matches!(cli.command, Command::Run(_));
    if let Err(e) = Db::probe(&target).await {
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
    Ok(Db::open(target, pool))
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

/// The ImageKit client.
pub fn imagekit(args: &ImageKitArgs) -> Result<ImageKit, AppError> {
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

/// The safe downloader and the ImageKit client.
pub fn services(args: &WorkerArgs) -> Result<Services, AppError> {
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

/// The worker's settings (`venue`: only that venue's images; `drain`: stop when done).
pub fn worker_config(args: &WorkerArgs, venue: Option<i64>, drain: bool) -> WorkerConfig {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit::Exit;
    use clap::Parser;

    #[test]
    fn an_http_upload_url_is_a_usage_error_at_start_up() {
        for args in [
            &[
                "once",
                "--imagekit-upload-url",
                "http://upload.imagekit.io/x",
            ][..],
            &[
                "run",
                "--imagekit-upload-url",
                "http://upload.imagekit.io/x",
            ],
            &[
                "retry",
                "--venue",
                "1",
                "--imagekit-upload-url",
                "http://10.0.0.5/x",
                "--insecure-imagekit-loopback",
            ],
            &["check", "--imagekit-upload-url", "http://127.0.0.1:9/x"],
        ] {
            let cli = Cli::try_parse_from(
                ["venue-image-uploader"]
                    .iter()
                    .chain(args)
                    .copied()
                    .collect::<Vec<_>>(),
            )
            .unwrap();
            let e = check_settings(&cli).unwrap_err();
            assert_eq!(e.exit, Exit::Usage, "{args:?}");
        }
        let cli = Cli::try_parse_from([
            "venue-image-uploader",
            "check",
            "--skip-imagekit",
            "--imagekit-upload-url",
            "http://upload.imagekit.io/x",
        ])
        .unwrap();
        assert!(
            check_settings(&cli).is_ok(),
            "a check that skips ImageKit does not use its URL"
        );
    }
}
