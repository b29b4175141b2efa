//! Settings (GUCs) of the extension, registered in `_PG_init`.
//!
//! Every setting is `SUSET`: the queue's `SECURITY DEFINER` functions follow them (retry
//! policy, error lists, folders, retention, the venues table), so only what a superuser
//! configured may count. Set them with `ALTER DATABASE ... SET` or `ALTER SYSTEM` as a
//! superuser, or `GRANT SET ON PARAMETER` to a trusted role. A non-superuser's `SET`,
//! `ALTER ROLE ... SET` or function `SET` clause is refused (42501); a placeholder value
//! set before the library was loaded is discarded with a warning when it loads, and
//! the `venue_images.` prefix is reserved so no unknown name can be set either.

use crate::errors::VenueError;
use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use std::ffi::{CStr, CString};
use venue_images_core::classify::Classifier;

const DEFAULT_TRANSIENT: &CStr =
    c"rate_limited,service_unavailable,network_timeout,gateway_timeout,bad_gateway,server_error,network_error";
const DEFAULT_PERMANENT: &CStr =
    c"not_found,forbidden,auth_error,file_too_large,invalid_provider_url,not_an_image";

pub static VENUES_TABLE: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"venues"));
pub static IMAGES_COLUMN: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"venue_images"));
pub static ID_COLUMN: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c"id"));
pub static NAME_COLUMN: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"name"));
pub static CITY_COLUMN: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"city_id"));
pub static SLUG_COLUMN: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"slug"));
pub static MAX_RETRIES: GucSetting<i32> = GucSetting::<i32>::new(3);
pub static TRANSIENT_ERRORS: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(DEFAULT_TRANSIENT));
pub static PERMANENT_ERRORS: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(DEFAULT_PERMANENT));
pub static RETRY_BASE_SECONDS: GucSetting<i32> = GucSetting::<i32>::new(30);
pub static FOLDER_BASE: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"/venues"));
pub static GIN_MAX_FAILING_SHARE: GucSetting<f64> = GucSetting::<f64>::new(0.05);
pub static ATTEMPT_RETENTION_DAYS: GucSetting<i32> = GucSetting::<i32>::new(30);
pub static PACING_MARGIN: GucSetting<f64> = GucSetting::<f64>::new(0.02);
pub static IMAGEKIT_URL_PREFIX: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c""));

/// Registers every setting. Called once from `_PG_init`.
pub fn register() {
    let suset = |name: &'static CStr,
                 short: &'static CStr,
                 setting: &'static GucSetting<Option<CString>>| {
        GucRegistry::define_string_guc(
            name,
            short,
            short,
            setting,
            GucContext::Suset,
            GucFlags::default(),
        );
    };
    suset(
        c"venue_images.venues_table",
        c"Relation holding venues (may be schema-qualified).",
        &VENUES_TABLE,
    );
    suset(
        c"venue_images.images_column",
        c"jsonb column holding the image array.",
        &IMAGES_COLUMN,
    );
    suset(c"venue_images.id_column", c"Venue id column.", &ID_COLUMN);
    suset(
        c"venue_images.name_column",
        c"Venue name column (optional).",
        &NAME_COLUMN,
    );
    suset(
        c"venue_images.city_column",
        c"Venue city id column (optional).",
        &CITY_COLUMN,
    );
    suset(
        c"venue_images.slug_column",
        c"Venue slug column (optional).",
        &SLUG_COLUMN,
    );
    GucRegistry::define_int_guc(
        c"venue_images.max_retries",
        c"Attempts before an image becomes permanently_failed.",
        c"Attempts before an image becomes permanently_failed.",
        &MAX_RETRIES,
        0,
        1000,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"venue_images.transient_errors",
        c"Comma list of transient (retryable) error types; replaces the built-in list.",
        c"Comma list of transient (retryable) error types; replaces the built-in list.",
        &TRANSIENT_ERRORS,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"venue_images.permanent_errors",
        c"Comma list of permanent error types; replaces the built-in list.",
        c"Comma list of permanent error types; replaces the built-in list.",
        &PERMANENT_ERRORS,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"venue_images.retry_base_seconds",
        c"Backoff base: attempt n waits base * 2^(n-1) seconds with jitter.",
        c"Backoff base: attempt n waits base * 2^(n-1) seconds with jitter.",
        &RETRY_BASE_SECONDS,
        0,
        86_400,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"venue_images.attempt_retention_days",
        c"Days of attempt history kept; the nightly scan prunes older rows.",
        c"Days of attempt history kept; the nightly scan prunes older rows.",
        &ATTEMPT_RETENTION_DAYS,
        1,
        36_500,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_float_guc(
        c"venue_images.gin_max_failing_share",
        c"Use the GIN index on the images column when a sample shows fewer venues with failures than this share.",
        c"0 never uses the index, 1 always does (when one exists). Below about 5% the index beats a parallel scan.",
        &GIN_MAX_FAILING_SHARE,
        0.0,
        1.0,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_float_guc(
        c"venue_images.pacing_margin",
        c"Provider slots are spaced (1 + margin) / rate apart.",
        c"The margin absorbs network jitter so that a provider never sees more than its rate in any 1-second window; 0.02 leaves 20 ms per second.",
        &PACING_MARGIN,
        0.0,
        1.0,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"venue_images.folder_base",
        c"ImageKit folder under which each venue gets its folder.",
        c"ImageKit folder under which each venue gets its folder.",
        &FOLDER_BASE,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"venue_images.imagekit_url_prefix",
        c"Write-back accepts only ImageKit URLs starting with this (empty: any http or https URL).",
        c"For example https://ik.imagekit.io/your_id/ ; a compromised uploader cannot then point images anywhere else.",
        &IMAGEKIT_URL_PREFIX,
        GucContext::Suset,
        GucFlags::default(),
    );
    // Nobody may create other venue_images.* settings (placeholders): a typo fails loudly,
    // and no unprivileged session can park a value under a name we might define later.
    // SAFETY: called from _PG_init with a static C string.
    unsafe { pgrx::pg_sys::MarkGUCPrefixReserved(c"venue_images".as_ptr()) };
}

fn string(setting: &GucSetting<Option<CString>>) -> Option<String> {
    setting.get().map(|c| c.to_string_lossy().into_owned())
}

/// The two list settings as last seen, and the classifier parsed from them.
type CachedClassifier = (Option<CString>, Option<CString>, Classifier);

thread_local! {
    static CLASSIFIER: std::cell::RefCell<Option<CachedClassifier>> =
        const { std::cell::RefCell::new(None) };
}

/// The classifier in effect (the two lists), parsed once per change of the settings.
pub fn classifier() -> Classifier {
    let t = TRANSIENT_ERRORS.get();
    let p = PERMANENT_ERRORS.get();
    CLASSIFIER.with(|cell| {
        let mut cache = cell.borrow_mut();
        if let Some((ct, cp, c)) = cache.as_ref() {
            if *ct == t && *cp == p {
                return c.clone();
            }
        }
        let c = Classifier::from_settings(
            t.as_deref().map(|s| s.to_str().unwrap_or("")),
            p.as_deref().map(|s| s.to_str().unwrap_or("")),
        );
        *cache = Some((t, p, c.clone()));
        c
    })
}

/// `venue_images.max_retries`.
pub fn max_retries() -> i64 {
    MAX_RETRIES.get() as i64
}

/// `venue_images.retry_base_seconds`.
pub fn retry_base_seconds() -> i64 {
    RETRY_BASE_SECONDS.get() as i64
}

/// `venue_images.gin_max_failing_share`.
pub fn gin_max_failing_share() -> f64 {
    GIN_MAX_FAILING_SHARE.get()
}

/// `venue_images.pacing_margin`.
pub fn pacing_margin() -> f64 {
    PACING_MARGIN.get()
}

/// `venue_images.imagekit_url_prefix` (`None` when empty).
pub fn imagekit_url_prefix() -> Option<String> {
    string(&IMAGEKIT_URL_PREFIX).filter(|s| !s.is_empty())
}

/// The retry policy in effect.
pub fn policy() -> venue_images_core::retry::Policy {
    venue_images_core::retry::Policy {
        classifier: classifier(),
        max_retries: max_retries(),
        base_seconds: retry_base_seconds() as f64,
    }
}

/// `venue_images.folder_base`.
pub fn folder_base() -> String {
    string(&FOLDER_BASE).unwrap_or_else(|| "/venues".into())
}

/// The configured names of the venues relation and its columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableNames {
    /// As written in the setting (resolved with `to_regclass`).
    pub table: String,
    /// jsonb image array.
    pub images: String,
    /// Venue id.
    pub id: String,
    /// Venue name (optional column).
    pub name: String,
    /// City id (optional column).
    pub city: String,
    /// Slug (optional column).
    pub slug: String,
}

/// Reads the table settings; an empty setting is an error (22023).
pub fn table_names() -> Result<TableNames, VenueError> {
    let get = |g: &GucSetting<Option<CString>>, name: &'static str| {
        string(g)
            .filter(|s| !s.trim().is_empty())
            .ok_or(VenueError::BadSetting {
                name,
                problem: "must not be empty".into(),
            })
    };
    Ok(TableNames {
        table: get(&VENUES_TABLE, "venue_images.venues_table")?,
        images: get(&IMAGES_COLUMN, "venue_images.images_column")?,
        id: get(&ID_COLUMN, "venue_images.id_column")?,
        name: get(&NAME_COLUMN, "venue_images.name_column")?,
        city: get(&CITY_COLUMN, "venue_images.city_column")?,
        slug: get(&SLUG_COLUMN, "venue_images.slug_column")?,
    })
}
