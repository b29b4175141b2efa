//! Every SQL text the uploader sends, each a call of one of the extension's functions (or
//! a read of one of its views), with schema-qualified names, types and operators (see the
//! module root's rules). A test checks that no text leaves a function, operator or type to
//! the search path.

// The worker (venue_image_uploader).
pub const CLAIM: &str =
    "SELECT job_id, lease_token::pg_catalog.text, venue_id, provider, provider_url, \
     folder, file_name, attempt, not_before FROM venue_images.venue_image_claim($1, $2, $3)";
pub const CLAIM_VENUE: &str = "SELECT job_id, lease_token::pg_catalog.text, venue_id, provider, provider_url, \
     folder, file_name, attempt, not_before FROM venue_images.venue_image_claim_venue($1, $2, $3, $4)";
pub const EXTEND_LEASE: &str =
    "SELECT venue_images.venue_image_extend_lease($1, $2::pg_catalog.uuid, $3)";
pub const RELEASE: &str = "SELECT venue_images.venue_image_release($1, $2::pg_catalog.uuid)";
pub const RECORD_RESULTS: &str =
    "SELECT job_id, status FROM venue_images.venue_image_record_results($1)";
pub const PAUSE_PROVIDER: &str = "SELECT venue_images.venue_image_pause_provider($1, $2, $3)";
pub const PROVIDER_STATES: &str = "SELECT provider, paused_until, pause_reason, last_success_at \
     FROM venue_images.venue_image_provider_status";
pub const NEXT_DUE: &str = "SELECT venue_images.venue_image_next_due($1)";

// The one-off commands.
pub const SET_RATE: &str = "SELECT venue_images.venue_image_set_provider_rate($1, $2)";
pub const RESUME_PROVIDER: &str = "SELECT venue_images.venue_image_resume_provider($1)";
pub const ENQUEUE_VENUE: &str = "SELECT venue_images.venue_image_enqueue_venue($1)";
pub const FORCE_RETRY: &str = "SELECT venue_images.venue_image_force_retry($1, $2)";
pub const FORCE_RETRY_IMAGE: &str = "SELECT venue_images.venue_image_force_retry_image($1, $2)";
pub const PURGE: &str = "SELECT venue_images.venue_image_purge_permanently_failed($1)";
pub const SCAN: &str = "SELECT transient_queued, permanent_logged, ambiguous_skipped, finalized, \
     errors, elapsed_ms, skipped_elements, images_queued FROM venue_images.venue_image_cleanup_scan()";
pub const SCHEDULED_SCAN: &str = "SELECT transient_queued, permanent_logged, ambiguous_skipped, \
     finalized, errors, elapsed_ms, skipped_elements, images_queued \
     FROM venue_images.venue_image_scheduled_scan($1)";
pub const QUEUE_SUMMARY: &str = "SELECT provider, due, waiting, leased, paused, total \
     FROM venue_images.venue_image_queue_summary($1)";
pub const SUMMARY_STATS: &str = "SELECT total_venues_with_failures, total_failed_images, \
     total_uploaded_images, average_failure_rate, venues_with_transient, venues_with_permanent, \
     venues_with_ambiguous, venues_scanned FROM venue_images.venue_image_summary_stats()";
pub const FAILURE_BREAKDOWN: &str = "SELECT provider, error_type, error_class, count \
     FROM venue_images.venue_image_failure_breakdown()";

// `check`: the server, the extension and the login's rights (catalog reads).
pub const SERVER_VERSION: &str = "SELECT pg_catalog.current_setting('server_version'), \
     current_user::pg_catalog.text";
pub const EXTENSION_VERSION: &str =
    "SELECT e.extversion::pg_catalog.text FROM pg_catalog.pg_extension e \
     WHERE e.extname OPERATOR(pg_catalog.=) 'venue_images'::pg_catalog.name";
pub const MISSING_PRIVILEGES: &str =
    "SELECT sig FROM pg_catalog.unnest($1::pg_catalog.text[]) AS sig \
     WHERE pg_catalog.to_regprocedure(sig) IS NULL \
        OR NOT pg_catalog.has_function_privilege(pg_catalog.to_regprocedure(sig), 'EXECUTE')";
pub const ENCRYPTED: &str = "SELECT coalesce((SELECT s.ssl FROM pg_catalog.pg_stat_ssl s \
     WHERE s.pid OPERATOR(pg_catalog.=) pg_catalog.pg_backend_pid()), false)";
/// Whether the server answers.
pub const PING: &str = "SELECT 1";
/// The server's port as the server sees it (compared with the one connected to: a
/// difference means a proxy or pooler is in between).
pub const SERVER_PORT: &str = "SELECT pg_catalog.inet_server_port()";

// The dashboard (venue_image_reader; the actions venue_image_admin).
pub const OVERVIEW: &str = "SELECT venue_images.venue_image_overview($1)";
pub const PROVIDER_OVERVIEW: &str = "SELECT provider, per_second, default_rate, paused_until, \
     pause_reason, last_success_at, updated_at, queued FROM venue_images.venue_image_provider_overview()";
pub const SCAN_LOG: &str =
    "SELECT started_at, finished_at, run_by, transient_queued, permanent_logged, \
     ambiguous_skipped, finalized, errors, elapsed_ms, skipped_elements, images_queued \
     FROM venue_images.venue_image_scan_log($1)";
pub const RETRY_REPORT: &str = "SELECT provider, error_type, attempts, recovered, failed_again, \
     permanent_failures, success_rate_pct, venues_recovered, api_calls_saved, oldest_live_lease_seconds \
     FROM venue_images.venue_image_retry_report($1::pg_catalog.text::pg_catalog.interval)";
pub const RECOVERY_TIMELINE: &str = "SELECT bucket_start, attempts, recovered, failed_again, \
     permanent_failures, success_rate_pct, api_calls_saved \
     FROM venue_images.venue_image_recovery_timeline($1::pg_catalog.text::pg_catalog.interval, \
                                                     $2::pg_catalog.text::pg_catalog.interval)";
pub const FIND_VENUES: &str =
    "SELECT id, name, city_id, total_images, failed_count, uploaded_count \
     FROM venue_images.venue_image_find_venues($1, $2)";
pub const VENUE_IMAGES: &str = "SELECT element_index, provider, source_url, upload_status, error_type, \
     error_class, retry_count, lifecycle, reason, job_id, job_state, next_attempt_at, imagekit_path, \
     can_force FROM venue_images.venue_image_venue_images($1)";
pub const VENUE_SUMMARY: &str = "SELECT id, name, city_id, total_images, failed_count, \
     permanently_failed_count, uploaded_count, queued_count, can_force, can_purge \
     FROM venue_images.venue_image_venue_summary($1)";
pub const VENUE_ATTEMPTS: &str = "SELECT at, outcome, provider, provider_url, retried_error_type, \
     error_type, status_code, message, retry_count, worker \
     FROM venue_images.venue_image_venue_attempts($1, $2)";
pub const PAUSE_FOR: &str = "SELECT venue_images.venue_image_pause_provider($1, \
     pg_catalog.now() OPERATOR(pg_catalog.+) pg_catalog.make_interval(secs => $2), $3)";

/// Every text above, for the test that reads them.
#[cfg(test)]
pub const ALL: &[&str] = &[
    CLAIM,
    CLAIM_VENUE,
    EXTEND_LEASE,
    RELEASE,
    RECORD_RESULTS,
    PAUSE_PROVIDER,
    PROVIDER_STATES,
    NEXT_DUE,
    SET_RATE,
    RESUME_PROVIDER,
    ENQUEUE_VENUE,
    FORCE_RETRY,
    FORCE_RETRY_IMAGE,
    PURGE,
    SCAN,
    SCHEDULED_SCAN,
    QUEUE_SUMMARY,
    SUMMARY_STATS,
    FAILURE_BREAKDOWN,
    SERVER_VERSION,
    EXTENSION_VERSION,
    MISSING_PRIVILEGES,
    ENCRYPTED,
    PING,
    SERVER_PORT,
    OVERVIEW,
    PROVIDER_OVERVIEW,
    SCAN_LOG,
    RETRY_REPORT,
    RECOVERY_TIMELINE,
    FIND_VENUES,
    VENUE_IMAGES,
    VENUE_SUMMARY,
    VENUE_ATTEMPTS,
    PAUSE_FOR,
];

#[cfg(test)]
mod tests {
    /// A lint over every text: each identifier followed by `(` is a schema-qualified
    /// function (or a keyword of SQL's own syntax), each `::` cast names a qualified type or
    /// one of SQL's keyword types, and no operator is written bare. (What this cannot see,
    /// the attack suite's traps catch: it runs these texts under a hostile search path.)
    #[test]
    fn every_name_is_qualified() {
        const SYNTAX: &[&str] = &[
            "coalesce",
            "current_user",
            "interval",
            "select",
            "from",
            "operator",
        ];
        for text in super::ALL {
            let b = text.as_bytes();
            for (i, _) in text.match_indices('(') {
                let mut j = i;
                while j > 0 && (b[j - 1].is_ascii_alphanumeric() || b[j - 1] == b'_') {
                    j -= 1;
                }
                let word = &text[j..i].to_ascii_lowercase();
                if word.is_empty() || SYNTAX.contains(&word.as_str()) {
                    continue;
                }
                assert!(
                    j > 0 && b[j - 1] == b'.',
                    "unqualified function {word}( in: {text}"
                );
            }
            for (i, _) in text.match_indices("::") {
                let rest = &text[i + 2..];
                assert!(
                    rest.starts_with("pg_catalog.")
                        || rest.starts_with("bigint")
                        || rest.starts_with("int"),
                    "unqualified type after :: in: {text}"
                );
            }
            for op in [
                " = ", " <> ", " < ", " > ", " + ", " - ", " || ", " @> ", " ~~ ",
            ] {
                assert!(!text.contains(op), "bare operator {op:?} in: {text}");
            }
        }
    }
}
