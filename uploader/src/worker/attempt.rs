//! One attempt at one image: wait for its provider's pacing slot, check that the
//! provider (and ImageKit) is not paused, download, upload; a failure is judged by
//! [`Health`](super::health::Health): charged to the image, or the image given back.
//!
//! An image still waiting for its slot when the shutdown fires goes back unattempted;
//! one already downloading finishes (within the grace period). ImageKit refusing the
//! service fires the shutdown with a fatal [`StopReason`].

use super::health::{Verdict, IMAGEKIT};
use super::{Ctx, Done, ReleaseReason, Transfer};
use crate::db::{Claim, OutcomeRecord, QueueApi};
use crate::exit::Exit;
use crate::failure::Failure;
use crate::imagekit::UploadRequest;
use crate::metrics::{FailureLabels, ProviderLabel};
use crate::shutdown::StopReason;
use tokio::time::Instant;
use tracing::{debug, error, info, warn};
use venue_images_core::retry::clean_message;

/// Why an attempt stopped short.
enum Stop {
    /// A failure to judge.
    Failed(Failure),
    /// A pause began before the next step: back unattempted.
    Paused,
}

/// One image: wait for its slot, check for pauses, download, upload.
pub async fn attempt<Q: QueueApi, T: Transfer>(ctx: &Ctx<Q, T>, claim: Claim) -> Done {
    let wait = ctx.clock.until(claim.not_before);
    if !wait.is_zero() {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = ctx.shutdown.triggered() => {
                let reason = ReleaseReason::on_stop(ctx.shutdown.reason().as_ref());
                return Done::release(&claim, reason);
            }
        }
    }
    if ctx.shutdown.reason().is_some_and(|r| r.is_fatal()) {
        // ImageKit refused the service meanwhile.
        return Done::release(&claim, ReleaseReason::Service);
    }
    if ctx
        .health
        .paused(&claim.provider, ctx.clock.now())
        .is_some()
    {
        debug!(job_id = claim.job_id, provider = %claim.provider, "provider paused: released unattempted");
        return Done::release(&claim, ReleaseReason::Paused);
    }
    let m = &ctx.metrics;
    let provider = ProviderLabel {
        provider: claim.provider.clone(),
    };
    m.attempts.get_or_create(&provider).inc();
    m.in_flight.inc();
    let result = process(ctx, &claim).await;
    m.in_flight.dec();
    match result {
        Ok(outcome) => {
            m.successes.get_or_create(&provider).inc();
            info!(job_id = claim.job_id, venue_id = claim.venue_id, provider = %claim.provider,
                  attempt = claim.attempt, file = %claim.file_name, "uploaded");
            Done::Outcome(outcome)
        }
        Err(Stop::Paused) => Done::release(&claim, ReleaseReason::Paused),
        Err(Stop::Failed(f)) => judged(ctx, &claim, f).await,
    }
}

async fn process<Q: QueueApi, T: Transfer>(
    ctx: &Ctx<Q, T>,
    claim: &Claim,
) -> Result<OutcomeRecord, Stop> {
    let t = Instant::now();
    let image = ctx
        .transfer
        .download(&claim.provider_url)
        .await
        .map_err(Stop::Failed)?;
    ctx.health.success(&claim.provider, ctx.clock.now());
    ctx.metrics
        .download_seconds
        .observe(t.elapsed().as_secs_f64());
    if ctx.health.paused(IMAGEKIT, ctx.clock.now()).is_some() {
        return Err(Stop::Paused);
    }
    let t = Instant::now();
    let uploaded = ctx
        .transfer
        .upload(UploadRequest {
            bytes: image.bytes,
            file_name: &claim.file_name,
            folder: &claim.folder,
            tags: vec![
                claim.provider.clone(),
                format!("venue:{}", claim.venue_slug()),
            ],
            mime: image.kind.mime(),
        })
        .await
        .map_err(Stop::Failed)?;
    ctx.health.success(IMAGEKIT, ctx.clock.now());
    ctx.metrics
        .upload_seconds
        .observe(t.elapsed().as_secs_f64());
    Ok(OutcomeRecord::uploaded(
        claim.job_id,
        claim.lease_token.clone(),
        uploaded.url,
        uploaded.file_path,
        Some(uploaded.file_id).filter(|f| !f.is_empty()),
    ))
}

/// A failed attempt, judged: recorded against the image, or given back.
async fn judged<Q: QueueApi, T: Transfer>(ctx: &Ctx<Q, T>, claim: &Claim, f: Failure) -> Done {
    ctx.metrics
        .failures
        .get_or_create(&FailureLabels {
            provider: claim.provider.clone(),
            error_type: f.error_type.as_str().into(),
            stage: f.stage.as_str().into(),
        })
        .inc();
    warn!(job_id = claim.job_id, venue_id = claim.venue_id, provider = %claim.provider,
          attempt = claim.attempt, error_type = %f.error_type, status = f.status_code,
          stage = f.stage.as_str(), network = f.network.map(|k| k.as_str()),
          request_id = f.request_id.as_deref(), message = %f.message, "attempt failed");
    let verdict = ctx.health.judge(&claim.provider, &f, ctx.clock.now());
    if let Verdict::Charge(Some(p)) | Verdict::Release(Some(p)) = &verdict {
        match ctx.queue.pause(&p.provider, p.until, &p.reason).await {
            Ok(()) => info!(provider = %p.provider, until = %p.until, reason = %p.reason,
                            "paused for every uploader"),
            Err(e) => warn!(provider = %p.provider, error = %e, "could not publish the pause"),
        }
    }
    match verdict {
        Verdict::Charge(_) => Done::Outcome(OutcomeRecord::failed(
            claim.job_id,
            claim.lease_token.clone(),
            f.error_type.as_str(),
            f.status_code.map(i64::from),
            clean_message(&format!("{}: {}", f.stage.as_str(), f.message)),
            f.retry_after.map(|d| d.as_secs_f64().ceil()),
        )),
        Verdict::Release(_) => {
            let reason = if f.error_type == crate::failure::ErrorType::RateLimited {
                ReleaseReason::RateLimited
            } else {
                ReleaseReason::Outage
            };
            debug!(
                job_id = claim.job_id,
                reason = reason.as_str(),
                "given back unattempted"
            );
            Done::release(claim, reason)
        }
        Verdict::Stop(msg) => {
            error!("{msg}; stopping (check IMAGEKIT_PRIVATE_KEY and the account)");
            ctx.shutdown
                .trigger(StopReason::fatal(Exit::ImageKitRefused, msg));
            Done::release(claim, ReleaseReason::Service)
        }
    }
}
