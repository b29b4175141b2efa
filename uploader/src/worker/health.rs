//! Provider health: which providers are paused, and whose fault a failure is.
//!
//! The rules (docs/operations.md, "Whose fault is a failure"):
//!
//! - A 429 is the provider throttling us, never the image's fault: the provider
//!   (ImageKit: `*`, everything) is paused for every uploader for its wait hint (or
//!   `default_pause`), and the image goes back unattempted: a pause is not an attempt.
//! - A failure that says nothing about the image itself, a transport failure (DNS
//!   failure, refused or reset connection, connect or request timeout) or a 5xx answer,
//!   is charged to the image only while its provider is known to be up: some upload of
//!   it was recorded within `outage_window` (by any uploader). Otherwise the provider (or
//!   ImageKit) is treated as down: it is paused for a probe delay (`probe_base`, doubling
//!   up to `probe_max`) and the image goes back unattempted; the next claims after the
//!   pause are the probes. A provider down for longer than `charge_after` is judged image
//!   by image again (a host dead for that long is the image's problem).
//! - Any other wait hint (`Retry-After` on a 503, say) also pauses the provider, while
//!   the failure itself is charged.
//! - ImageKit refusing the credentials or the account stops the uploader.
//! - Everything else is the image's own failure, charged as an attempt.
//!
//! Images whose provider is paused when their pacing slot comes are released, not
//! attempted. Pauses set by other uploaders arrive with [`Health::merge`] (the worker
//! refreshes them every second or so).

use crate::backoff::Backoff;
use crate::db::ProviderState;
use crate::failure::{ErrorType, Failure, NetworkKind, Scope, Stage};
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// The provider key of ImageKit (its pause stops every provider's uploads).
pub const IMAGEKIT: &str = "*";

/// The health settings.
#[derive(Debug, Clone)]
pub struct HealthConfig {
    /// Pause after a 429 without a wait hint.
    pub default_pause: Duration,
    /// A provider with an upload recorded within this long is reachable.
    pub outage_window: Duration,
    /// First probe delay of an unreachable provider.
    pub probe_base: Duration,
    /// Longest probe delay.
    pub probe_max: Duration,
    /// After this long unreachable, network failures are charged to images again.
    pub charge_after: Duration,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            default_pause: Duration::from_secs(60),
            outage_window: Duration::from_secs(120),
            probe_base: Duration::from_secs(5),
            probe_max: Duration::from_secs(60),
            charge_after: Duration::from_secs(6 * 3600),
        }
    }
}

#[derive(Debug, Default, Clone)]
struct ProviderHealth {
    paused_until: Option<DateTime<Utc>>,
    last_ok: Option<DateTime<Utc>>,
    down_since: Option<DateTime<Utc>>,
    /// The probe delays while it looks down (`None`: up, or not known to be down).
    probes: Option<Backoff>,
}

/// A pause to publish for every uploader.
#[derive(Debug, Clone, PartialEq)]
pub struct Pause {
    /// Provider, or `*`.
    pub provider: String,
    /// Until.
    pub until: DateTime<Utc>,
    /// Why (no secrets).
    pub reason: String,
}

/// Whose fault a failure is, and what to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// The image's own failure: record it as an attempt (and publish the pause the
    /// provider asked for, if any).
    Charge(Option<Pause>),
    /// Not the image's fault: give it back unattempted (publishing the pause, if any).
    Release(Option<Pause>),
    /// ImageKit refused the service: stop this uploader.
    Stop(String),
}

/// Provider pauses and reachability, shared by this uploader's tasks.
pub struct Health {
    cfg: HealthConfig,
    state: Mutex<HashMap<String, ProviderHealth>>,
}

fn plus(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    t + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

impl Health {
    /// Empty: nothing paused, nothing known.
    pub fn new(cfg: HealthConfig) -> Self {
        Health {
            cfg,
            state: Mutex::new(HashMap::new()),
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, ProviderHealth>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Until when the provider's images may not start (its own pause or the global one).
    pub fn paused(&self, provider: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let m = self.map();
        [provider, IMAGEKIT]
            .iter()
            .filter_map(|k| m.get(*k).and_then(|h| h.paused_until))
            .filter(|u| *u > now)
            .max()
    }

    /// Folds in what the database knows: pauses set by any uploader or operator, and
    /// each provider's last recorded upload. A pause ended there (resumed) ends here.
    pub fn merge(&self, states: &[ProviderState]) {
        let mut m = self.map();
        for s in states {
            let h = m.entry(s.provider.clone()).or_default();
            h.paused_until = s.paused_until;
            if let Some(t) = s.last_success_at {
                if h.last_ok.is_none_or(|l| t > l) {
                    h.last_ok = Some(t);
                }
            }
        }
    }

    /// A download from the provider (or, with [`IMAGEKIT`], an upload) worked.
    pub fn success(&self, key: &str, now: DateTime<Utc>) {
        let mut m = self.map();
        let h = m.entry(key.to_string()).or_default();
        h.last_ok = Some(now);
        h.down_since = None;
        h.probes = None;
    }

    /// Decides whose fault `f` is, for an image of `provider`.
    pub fn judge(&self, provider: &str, f: &Failure, now: DateTime<Utc>) -> Verdict {
        if f.scope == Scope::Service {
            return Verdict::Stop(format!("ImageKit refused the service: {f}"));
        }
        let key = match f.stage {
            Stage::Download => provider,
            Stage::Upload => IMAGEKIT,
        };
        let who = if key == IMAGEKIT {
            "ImageKit".to_string()
        } else {
            provider.to_string()
        };
        let mut m = self.map();
        let h = m.entry(key.to_string()).or_default();
        let asked = f.retry_after.map(|wait| Pause {
            provider: key.to_string(),
            until: plus(now, wait),
            reason: format!("{} from {who}", f.error_type),
        });
        if f.error_type == ErrorType::RateLimited {
            let p = asked.unwrap_or_else(|| Pause {
                provider: key.to_string(),
                until: plus(now, self.cfg.default_pause),
                reason: format!("{} from {who}", f.error_type),
            });
            h.paused_until = h.paused_until.max(Some(p.until));
            return Verdict::Release(Some(p));
        }
        let network = f.network.filter(|k| {
            matches!(
                k,
                NetworkKind::Dns | NetworkKind::Connect | NetworkKind::Timeout
            )
        });
        let server = f.status_code.is_some_and(|s| (500..600).contains(&s));
        let up = h.last_ok.is_some_and(|t| {
            now.signed_duration_since(t).to_std().unwrap_or_default() <= self.cfg.outage_window
        });
        let long_down = h.down_since.is_some_and(|d| {
            now.signed_duration_since(d).to_std().unwrap_or_default() >= self.cfg.charge_after
        });
        if !(network.is_some() || server) || up || long_down {
            if let Some(p) = &asked {
                h.paused_until = h.paused_until.max(Some(p.until));
            }
            return Verdict::Charge(asked);
        }
        h.down_since.get_or_insert(now);
        let delay = h
            .probes
            .get_or_insert_with(|| Backoff::new(self.cfg.probe_base, self.cfg.probe_max))
            .next_delay();
        let until = plus(now, delay).max(asked.map(|p| p.until).unwrap_or(now));
        h.paused_until = h.paused_until.max(Some(until));
        let what = match (network, f.status_code) {
            (Some(k), _) => format!("unreachable ({k})"),
            (None, Some(s)) => format!("answering HTTP {s}"),
            (None, None) => "failing".to_string(),
        };
        Verdict::Release(Some(Pause {
            provider: key.to_string(),
            until,
            reason: format!(
                "{who} {what} with no recent success: images are not charged; probing again in {}s",
                (until - now).num_seconds()
            ),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap_or_default()
    }

    fn net(kind: NetworkKind) -> Failure {
        Failure::transport(Stage::Download, ErrorType::NetworkError, kind, "no route")
    }

    /// The image is charged the attempt, and nothing is paused.
    const CHARGED: Verdict = Verdict::Charge(None);

    /// How `h` judges a network failure of `kind` from `provider` at `t(at)`.
    fn judge_net(h: &Health, provider: &str, kind: NetworkKind, at: i64) -> Verdict {
        h.judge(provider, &net(kind), t(at))
    }

    /// A download answered `status`, asking to wait `secs` seconds.
    fn wait_hint(status: u16, secs: u64) -> Failure {
        Failure {
            retry_after: Some(Duration::from_secs(secs)),
            ..Failure::from_status(Stage::Download, status, format!("HTTP {status}"))
        }
    }

    #[test]
    fn network_failures_are_charged_only_while_the_provider_is_reachable() {
        let h = Health::new(HealthConfig::default());
        // Nothing known: an outage. Released, paused 5 s, then 10 s, ...
        let Verdict::Release(Some(p)) = judge_net(&h, "here", NetworkKind::Dns, 0) else {
            panic!("expected a release")
        };
        assert_eq!(p.until, t(5));
        assert!(p.reason.contains("unreachable (dns)"), "{}", p.reason);
        assert_eq!(h.paused("here", t(1)), Some(t(5)));
        assert_eq!(h.paused("other", t(1)), None);
        let Verdict::Release(Some(p)) = judge_net(&h, "here", NetworkKind::Connect, 6) else {
            panic!()
        };
        assert_eq!(p.until, t(16));
        // Up again: the next network failure is the image's own.
        h.success("here", t(20));
        assert_eq!(judge_net(&h, "here", NetworkKind::Timeout, 30), CHARGED);
        // A truncated body is always the image's.
        let h2 = Health::new(HealthConfig::default());
        assert_eq!(judge_net(&h2, "here", NetworkKind::Other, 0), CHARGED);
        // Unreachable for longer than charge_after: charged again.
        let h3 = Health::new(HealthConfig {
            charge_after: Duration::from_secs(100),
            ..HealthConfig::default()
        });
        assert!(matches!(
            judge_net(&h3, "x", NetworkKind::Dns, 0),
            Verdict::Release(_)
        ));
        assert_eq!(judge_net(&h3, "x", NetworkKind::Dns, 150), CHARGED);
    }

    #[test]
    fn a_success_known_to_the_database_counts_too() {
        let h = Health::new(HealthConfig::default());
        h.merge(&[ProviderState {
            provider: "here".into(),
            paused_until: None,
            pause_reason: None,
            last_success_at: Some(t(-30)),
        }]);
        assert_eq!(judge_net(&h, "here", NetworkKind::Dns, 0), CHARGED);
    }

    #[test]
    fn server_errors_are_an_outage_only_without_a_recent_success() {
        let h = Health::new(HealthConfig::default());
        let f = wait_hint(503, 1);
        let Verdict::Release(Some(p)) = h.judge("here", &f, t(0)) else {
            panic!("a provider answering 503 with no success is down")
        };
        assert!(p.reason.contains("answering HTTP 503"), "{}", p.reason);
        h.success("here", t(10));
        // Up: the 503 is this image's; the Retry-After still pauses the provider.
        let Verdict::Charge(Some(p)) = h.judge("here", &f, t(11)) else {
            panic!("expected a charge with a pause")
        };
        assert_eq!(p.until, t(12));
    }

    #[test]
    fn rate_limits_pause_and_are_not_attempts() {
        let h = Health::new(HealthConfig::default());
        assert_eq!(
            h.judge("here", &wait_hint(429, 30), t(0)),
            Verdict::Release(Some(Pause {
                provider: "here".into(),
                until: t(30),
                reason: "rate_limited from here".into()
            }))
        );
        let f = Failure::from_status(Stage::Upload, 429, "slow down");
        let Verdict::Release(Some(p)) = h.judge("here", &f, t(0)) else {
            panic!()
        };
        assert_eq!((p.provider.as_str(), p.until), (IMAGEKIT, t(60)));
        assert_eq!(h.paused("anything", t(1)), Some(t(60)));
        // A permanent error is the image's.
        let f = Failure::from_status(Stage::Download, 404, "gone");
        assert_eq!(h.judge("here", &f, t(0)), CHARGED);
    }
}
