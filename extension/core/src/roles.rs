//! Who may call what: the one list of the extension's grants.
//!
//! Everything else follows from [`GRANTS`]: the extension's install script grants the
//! `PUBLIC` rows and the migration `sql/002_roles.sql` the others (both through the SQL
//! function `venue_images.venue_image_role_grants()`, which returns this list), the
//! uploader's `check` verifies the rows of `venue_image_uploader`, and a test compares the
//! documentation's table with it. Adding an uploader-callable function means adding its
//! signature to the uploader's list here (see docs/development.md).

/// A role the grants name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Everyone: the per-value functions (pure, or reading superuser settings).
    Public,
    /// `venue_image_reader`: analysts and dashboards.
    Reader,
    /// `venue_image_uploader`: the sidecar (also a member of the reader role).
    Uploader,
    /// `venue_image_admin`: manual review and operations (also a member of the reader role).
    Admin,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 4] = [Role::Public, Role::Reader, Role::Uploader, Role::Admin];

    /// The role's name in SQL (`PUBLIC` for everyone).
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Public => "PUBLIC",
            Role::Reader => "venue_image_reader",
            Role::Uploader => "venue_image_uploader",
            Role::Admin => "venue_image_admin",
        }
    }

    /// The role with this SQL name.
    pub fn parse(s: &str) -> Option<Role> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// What a grant allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Privilege {
    /// `EXECUTE` on a function (the object is its signature).
    Execute,
    /// `SELECT` on a view or table.
    Select,
}

impl Privilege {
    /// The privilege's SQL keyword.
    pub const fn as_str(self) -> &'static str {
        match self {
            Privilege::Execute => "EXECUTE",
            Privilege::Select => "SELECT",
        }
    }
}

/// One grant: role, privilege, object (`venue_images.` name; functions with their
/// argument types, as `regprocedure` accepts them).
pub type Grant = (Role, Privilege, &'static str);

use Privilege::{Execute, Select};
use Role::{Admin, Public, Reader, Uploader};

/// The grants of one role and privilege.
struct Grants {
    role: Role,
    privilege: Privilege,
    objects: &'static [&'static str],
}

/// Every grant of the extension's objects, by role and privilege.
const BY_ROLE: &[Grants] = &[
    // Per-value functions: pure, or following only superuser settings.
    Grants {
        role: Public,
        privilege: Execute,
        objects: &[
            "venue_images.venue_image_classify_error(text)",
            "venue_images.venue_image_error_type(integer)",
            "venue_images.venue_image_quality_score(integer, integer)",
            "venue_images.venue_image_priority_score(integer, double precision, boolean)",
            "venue_images.venue_image_file_name(text, text)",
            "venue_images.venue_image_folder(text, bigint)",
            "venue_images.venue_images_dedupe(jsonb)",
            "venue_images.venue_images_merge(jsonb, jsonb)",
            "venue_images.venue_images_summary(jsonb)",
            "venue_images.venue_images_summary_counts(jsonb)",
            "venue_images.venue_images_finalize(jsonb)",
            "venue_images.venue_images_redact(text)",
            "venue_images.venue_images_redact_json(jsonb)",
            "venue_images.venue_images_relation()",
            "venue_images.venue_image_default_rate(text)",
            "venue_images.venue_image_effective_rate(text, double precision, double precision)",
            "venue_images.venue_image_job_claimable(timestamp with time zone, uuid, timestamp with time zone)",
            "venue_images.venue_image_outcome_group(text)",
            "venue_images.venue_image_success_rate(bigint, bigint)",
            "venue_images.venue_image_role_grants()",
            "venue_images.venue_images_stats(jsonb)",
            // The analytics' aggregates run as the venues table's owner; they only compute over
            // the arrays they are given.
            "venue_images.venue_images_stats_state(jsonb)",
            "venue_images.venue_images_venue_list(bigint, text, bigint, jsonb, integer, boolean, integer, boolean, boolean)",
        ],
    },
    // venue_image_reader: analytics, reports, the queue's state, single venues.
    Grants {
        role: Reader,
        privilege: Execute,
        objects: &[
            "venue_images.venue_image_failure_breakdown()",
            "venue_images.venues_with_image_failures()",
            "venue_images.venue_image_partial_failure_candidates(integer, integer)",
            "venue_images.venue_image_high_priority_venues(integer)",
            "venue_images.venue_image_summary_stats()",
            "venue_images.venue_image_overview(integer)",
            "venue_images.venue_image_retry_report(interval)",
            "venue_images.venue_image_recovery_timeline(interval, interval)",
            "venue_images.venue_image_next_due(bigint)",
            "venue_images.venue_image_venue_images(bigint)",
            "venue_images.venue_image_find_venues(text, integer)",
            "venue_images.venue_image_venue_summary(bigint)",
            "venue_images.venue_image_queue_summary(bigint)",
            "venue_images.venue_image_provider_overview()",
            "venue_images.venue_image_scan_log(integer)",
            "venue_images.venue_image_venue_attempts(bigint, integer)",
        ],
    },
    Grants {
        role: Reader,
        privilege: Select,
        objects: &[
            "venue_images.venue_image_retry_queue",
            "venue_images.venue_image_provider_status",
            "venue_images.venue_image_attempts",
            "venue_images.venue_image_skips",
            "venue_images.venue_image_scans",
        ],
    },
    // venue_image_uploader: what the sidecar calls.
    Grants {
        role: Uploader,
        privilege: Execute,
        objects: &[
            "venue_images.venue_image_claim(text, integer, integer)",
            "venue_images.venue_image_claim_venue(text, bigint, integer, integer)",
            "venue_images.venue_image_extend_lease(bigint, uuid, integer)",
            "venue_images.venue_image_release(bigint, uuid)",
            "venue_images.venue_image_record_success(bigint, uuid, text, text, text)",
            "venue_images.venue_image_record_failure(bigint, uuid, text, integer, text, integer)",
            "venue_images.venue_image_record_results(jsonb)",
            "venue_images.venue_image_pause_provider(text, timestamp with time zone, text)",
            "venue_images.venue_image_enqueue_venue(bigint)",
            "venue_images.venue_image_cleanup_scan()",
            "venue_images.venue_image_scheduled_scan(timestamp with time zone)",
        ],
    },
    // venue_image_admin: manual review and operations.
    Grants {
        role: Admin,
        privilege: Execute,
        objects: &[
            "venue_images.venue_image_force_retry(bigint, text)",
            "venue_images.venue_image_force_retry_image(bigint, integer)",
            "venue_images.venue_image_purge_permanently_failed(bigint)",
            "venue_images.venue_image_pause_provider(text, timestamp with time zone, text)",
            "venue_images.venue_image_resume_provider(text)",
            "venue_images.venue_image_set_provider_rate(text, double precision)",
            "venue_images.venue_image_cleanup_scan()",
            "venue_images.venue_image_scheduled_scan(timestamp with time zone)",
            "venue_images.venue_image_prune_attempts(interval)",
            "venue_images.venue_image_enqueue_venue(bigint)",
        ],
    },
];

/// How many grants [`BY_ROLE`] lists.
const COUNT: usize = {
    let mut n = 0;
    let mut i = 0;
    while i < BY_ROLE.len() {
        n += BY_ROLE[i].objects.len();
        i += 1;
    }
    n
};

/// [`BY_ROLE`], one row a grant, in its order.
const FLAT: [Grant; COUNT] = {
    let mut out = [(Public, Execute, ""); COUNT];
    let (mut i, mut k) = (0, 0);
    while i < BY_ROLE.len() {
        let g = &BY_ROLE[i];
        let mut j = 0;
        while j < g.objects.len() {
            out[k] = (g.role, g.privilege, g.objects[j]);
            k += 1;
            j += 1;
        }
        i += 1;
    }
    out
};

/// Every grant of the extension's objects, one row a grant.
pub const GRANTS: &[Grant] = &FLAT;

/// The objects `role` is granted directly (not through membership of the reader role).
pub fn granted(role: Role) -> impl Iterator<Item = (Privilege, &'static str)> {
    GRANTS
        .iter()
        .filter(move |(r, _, _)| *r == role)
        .map(|(_, p, o)| (*p, *o))
}

/// The functions `role` may execute, with what it inherits from the reader role and
/// from `PUBLIC`.
pub fn executable(role: Role) -> Vec<&'static str> {
    let inherits: &[Role] = match role {
        Role::Public => &[Role::Public],
        Role::Reader => &[Role::Public, Role::Reader],
        Role::Uploader => &[Role::Public, Role::Reader, Role::Uploader],
        Role::Admin => &[Role::Public, Role::Reader, Role::Admin],
    };
    let mut out: Vec<&'static str> = GRANTS
        .iter()
        .filter(|(r, p, _)| inherits.contains(r) && *p == Privilege::Execute)
        .map(|(_, _, o)| *o)
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_and_objects_are_ours() {
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
        for (_, p, o) in GRANTS {
            assert!(o.starts_with("venue_images."), "{o}");
            assert_eq!(*p == Privilege::Execute, o.ends_with(')'), "{o}");
        }
    }

    #[test]
    fn no_grant_is_listed_twice() {
        let mut seen = std::collections::HashSet::new();
        for g in GRANTS {
            assert!(seen.insert(*g), "{g:?} twice");
        }
    }

    #[test]
    fn the_uploader_may_do_what_the_sidecar_calls() {
        let up = executable(Role::Uploader);
        for f in [
            "venue_images.venue_image_claim(text, integer, integer)",
            "venue_images.venue_image_record_results(jsonb)",
            "venue_images.venue_image_summary_stats()",
            "venue_images.venue_image_next_due(bigint)",
        ] {
            assert!(up.contains(&f), "{f}");
        }
        assert!(!up.contains(&"venue_images.venue_image_set_provider_rate(text, double precision)"));
    }
}
