//! The operators' commands: `enqueue`, `scan`, `migrate`, `rates`, `resume`,
//! `force-retry`. Each connects, calls one of the extension's functions, and prints
//! what it did.

use super::setup::connect;
use crate::cli::Cli;
use crate::error::AppError;
use crate::exit::Exit;

/// The migrations shipped in the binary (`sql/`), applied in order.
pub const MIGRATIONS: &[(&str, &str)] = &[
    (
        "001_enable_venue_images.sql",
        include_str!("../../../sql/001_enable_venue_images.sql"),
    ),
    ("002_roles.sql", include_str!("../../../sql/002_roles.sql")),
    (
        "003_venues_table.sql",
        include_str!("../../../sql/003_venues_table.sql"),
    ),
];

/// `venue-image-uploader enqueue --venue`: makes the venue's retryable images due now.
pub async fn enqueue(cli: &Cli, venue: i64) -> Result<Exit, AppError> {
    let queue = connect(cli, None).await?;
    let n = queue
        .enqueue_venue(venue)
        .await
        .map_err(|e| AppError::db(e, "venue_image_uploader"))?;
    println!("venue {venue}: {n} retryable image(s) due now");
    Ok(Exit::Ok)
}

/// `venue-image-uploader scan`: the nightly cleanup scan, now.
pub async fn scan(cli: &Cli) -> Result<Exit, AppError> {
    let queue = connect(cli, None).await?;
    let r = queue
        .scan()
        .await
        .map_err(|e| AppError::db(e, "venue_image_uploader or venue_image_admin"))?;
    println!(
        "transient_queued {}  permanent_logged {}  ambiguous_skipped {}  finalized {}  errors {}  skipped_elements {}  images_queued {}  ({:.0} ms)",
        r.transient_queued, r.permanent_logged, r.ambiguous_skipped, r.finalized,
        r.errors, r.skipped_elements, r.images_queued, r.elapsed_ms
    );
    Ok(Exit::Ok)
}

/// `venue-image-uploader migrate`: applies [`MIGRATIONS`] (as a superuser).
pub async fn migrate(cli: &Cli) -> Result<Exit, AppError> {
    let db = connect(cli, None).await?;
    for (name, sql) in MIGRATIONS {
        db.migrate(&[(name, sql)]).await.map_err(|(name, e)| {
            AppError::new(format!("{name}: {e} (migrations run as a superuser)"))
        })?;
        println!("applied {name}");
    }
    Ok(Exit::Ok)
}

/// `venue-image-uploader rates PROVIDER=PER_SECOND...`: sets providers' shared rates
/// (`None`: the built-in default).
pub async fn rates(cli: &Cli, rates: &[(String, Option<f64>)]) -> Result<Exit, AppError> {
    let queue = connect(cli, None).await?;
    for (provider, rate) in rates {
        queue
            .set_rate(provider, *rate)
            .await
            .map_err(|e| AppError::db(e, "venue_image_admin"))?;
        match rate {
            Some(r) => println!("{provider}: {r}/s"),
            None => println!("{provider}: built-in default"),
        }
    }
    Ok(Exit::Ok)
}

/// `venue-image-uploader resume --provider`: ends a provider's pause now.
pub async fn resume(cli: &Cli, provider: &str) -> Result<Exit, AppError> {
    let queue = connect(cli, None).await?;
    let was = queue
        .resume(provider)
        .await
        .map_err(|e| AppError::db(e, "venue_image_admin"))?;
    println!(
        "{provider}: {}",
        if was { "resumed" } else { "was not paused" }
    );
    Ok(Exit::Ok)
}

/// `venue-image-uploader force-retry --venue [--url]`: one more attempt for a venue's
/// failed images (or the one with `url`).
pub async fn force_retry(cli: &Cli, venue: i64, url: &Option<String>) -> Result<Exit, AppError> {
    let queue = connect(cli, None).await?;
    let n = queue
        .force_retry(venue, url.as_deref())
        .await
        .map_err(|e| AppError::db(e, "venue_image_admin"))?;
    println!("venue {venue}: {n} image(s) queued for one more attempt");
    Ok(Exit::Ok)
}
