//! Every vocabulary round-trips through its spelling, and the SQL that spells the same
//! words (`extension/src/queue/schema.sql`) agrees with the enums.

use super::*;
use crate::classify::ErrorClass;

/// The extension's schema, as installed by `CREATE EXTENSION`.
const SCHEMA: &str = include_str!("../../../../src/queue/schema.sql");

/// Checks one vocabulary: `ALL` lists exactly these variants in this order, the match
/// below is exhaustive (a new variant fails to compile here until it is listed), they are
/// spelled with these words (as SQL and the uploader read them), the spellings are
/// distinct, and `parse` is the exact inverse of `as_str`.
macro_rules! vocabulary {
    ($enum:ident: $($v:ident),+; $words:literal) => {{
        assert_eq!($enum::ALL, [$($enum::$v),+], "{}::ALL", stringify!($enum));
        assert_eq!($enum::ALL.map($enum::as_str).join(" "), $words, "{}'s words", stringify!($enum));
        for x in $enum::ALL {
            match x {
                $($enum::$v)|+ => {}
            }
            let word = x.as_str();
            assert_eq!($enum::parse(word), Some(x), "{}::parse({word:?})", stringify!($enum));
            let same: Vec<_> = $enum::ALL.into_iter().filter(|y| y.as_str() == word).collect();
            assert_eq!(same, [x], "{} spells {word:?} once", stringify!($enum));
            for near in [
                word.to_uppercase(),
                format!(" {word}"),
                format!("{word} "),
                word[..word.len() - 1].to_string(),
            ] {
                assert_eq!($enum::parse(&near), None, "{}::parse({near:?})", stringify!($enum));
            }
        }
        assert_eq!($enum::parse(""), None);
    }};
}

#[test]
fn every_vocabulary_round_trips() {
    vocabulary!(
        Status: Uploaded, Failed, PermanentlyFailed, Other;
        "uploaded failed permanently_failed other"
    );
    vocabulary!(
        ErrorClass: Transient, Permanent, Ambiguous, Unknown;
        "transient permanent ambiguous unknown"
    );
    vocabulary!(
        Lifecycle: NotFailed, Queued, ToFinalize, Review, PermanentlyFailed, Skipped;
        "not_failed queued to_finalize review permanently_failed skipped"
    );
    vocabulary!(
        QueueState: Due, Waiting, Leased, Paused;
        "due waiting leased paused"
    );
    vocabulary!(
        AttemptOutcome: Uploaded, Failed, Review, PermanentlyFailed, Superseded, Finalized, Forced, Purged;
        "uploaded failed review permanently_failed superseded finalized forced purged"
    );
    vocabulary!(
        ReportGroup: Recovered, FailedAgain, PermanentFailure, Finalized;
        "recovered failed_again permanent_failure finalized"
    );
    vocabulary!(
        WriteBackStatus: Uploaded, Failed, PermanentlyFailed, Superseded, Stale;
        "uploaded failed permanently_failed superseded stale"
    );
}

/// Every `State` has its lifecycle word, and every word but `skipped` (the elements the
/// queue cannot read, which have no `State`) is some `State`'s.
#[test]
fn states_speak_the_lifecycle_vocabulary() {
    use super::super::{FinalReason, ReviewReason, State};
    let states = [
        State::Untouched,
        State::Queued,
        State::Finalize(FinalReason::PermanentError),
        State::Finalize(FinalReason::RetriesExhausted),
        State::Finalize(FinalReason::NoSourceUrl),
        State::Review(ReviewReason::AmbiguousError),
        State::Review(ReviewReason::NoErrorType),
        State::PermanentlyFailed,
    ];
    for s in states {
        assert_eq!(s.as_str(), s.lifecycle().as_str());
        assert_eq!(
            s.reason().is_some(),
            matches!(s, State::Finalize(_) | State::Review(_))
        );
    }
    for l in Lifecycle::ALL {
        let reached = states.iter().any(|s| s.lifecycle() == l);
        assert_eq!(reached, l != Lifecycle::Skipped, "{}", l.as_str());
    }
}

/// The single-quoted literals of a piece of SQL, in order (`''` is a quote).
fn literals(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = sql;
    while let Some(start) = rest.find('\'') {
        let mut lit = String::new();
        let mut chars = rest[start + 1..].char_indices();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            if c != '\'' {
                lit.push(c);
                continue;
            }
            if rest[start + 1 + i + 1..].starts_with('\'') {
                lit.push('\'');
                chars.next();
                continue;
            }
            end = Some(start + 1 + i + 1);
            break;
        }
        let end = end.expect("an unterminated literal in schema.sql");
        out.push(lit);
        rest = &rest[end..];
    }
    out
}

/// The text between the first `from` and the first `to` after it.
fn between<'a>(sql: &'a str, from: &str, to: &str) -> &'a str {
    let start = sql
        .find(from)
        .unwrap_or_else(|| panic!("schema.sql has no {from:?}"));
    let rest = &sql[start + from.len()..];
    let end = rest
        .find(to)
        .unwrap_or_else(|| panic!("schema.sql has no {to:?} after {from:?}"));
    &rest[..end]
}

#[test]
fn literals_are_read_like_sql() {
    assert_eq!(literals("IN ('a', 'b''c',\n 'd')"), ["a", "b'c", "d"]);
    assert_eq!(literals("no literal"), Vec::<String>::new());
}

/// `venue_image_attempts.outcome`'s CHECK constraint lists `AttemptOutcome::ALL`, in order.
#[test]
fn the_attempt_logs_check_is_attempt_outcome_all() {
    let check = between(SCHEMA, "outcome text NOT NULL CHECK (outcome IN (", "))");
    assert_eq!(
        literals(check),
        AttemptOutcome::ALL.map(|o| o.as_str().to_string()),
        "schema.sql's CHECK on venue_image_attempts.outcome"
    );
}

/// The queue view's `state` column gives exactly `QueueState`'s words (in its CASE's
/// order of precedence: leased, paused, due, waiting).
#[test]
fn the_queue_views_states_are_queue_state_all() {
    let view = between(
        SCHEMA,
        "CREATE OR REPLACE VIEW venue_images.venue_image_retry_queue AS",
        ";",
    );
    let (before, _) = view
        .split_once("END AS state")
        .expect("the queue view has a state column");
    let case = &before[before.rfind("CASE").expect("the state column is a CASE")..];
    let words = literals(case);
    assert_eq!(words, ["leased", "paused", "due", "waiting"]);
    let mut got: Vec<QueueState> = words
        .iter()
        .map(|w| QueueState::parse(w).unwrap_or_else(|| panic!("{w:?} is no QueueState")))
        .collect();
    got.sort();
    assert_eq!(got, QueueState::ALL);
}

/// The retry report and the recovery timeline compare `venue_image_outcome_group`'s
/// result with `ReportGroup`'s words, and with every one of them.
#[test]
fn the_reports_groups_are_report_group_all() {
    for function in [
        "FUNCTION venue_images.venue_image_retry_report(",
        "FUNCTION venue_images.venue_image_recovery_timeline(",
    ] {
        let body = between(SCHEMA, function, "$$;");
        let mut used: Vec<ReportGroup> = Vec::new();
        for op in [
            "grp OPERATOR(pg_catalog.=) '",
            "grp OPERATOR(pg_catalog.<>) '",
        ] {
            for (i, _) in body.match_indices(op) {
                let word = &literals(&body[i + op.len() - 1..])[0];
                let g = ReportGroup::parse(word)
                    .unwrap_or_else(|| panic!("{function}: {word:?} is no ReportGroup"));
                if !used.contains(&g) {
                    used.push(g);
                }
            }
        }
        for g in ReportGroup::ALL {
            assert!(used.contains(&g), "{function} never counts {}", g.as_str());
        }
        assert!(
            body.contains("venue_images.venue_image_outcome_group(x.outcome)"),
            "{function} groups outcomes with venue_image_outcome_group"
        );
    }
}
