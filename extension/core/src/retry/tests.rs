use super::*;
use crate::classify::Classifier;
use crate::image::{ImageError, Status};
use crate::jsonb::{encode, parse_json, parse_varlena, to_json_text};
use crate::jsonb::{Container, Node, Value};
use crate::summary::summarize;
use proptest::prelude::*;
use serde_json::{json, Value as J};
use std::borrow::Cow;
use std::sync::LazyLock;

fn bytes(json: &str) -> Vec<u8> {
    encode(&parse_json(json).unwrap()).unwrap()
}

fn text_of(node: &Node<'_>) -> String {
    let b = encode(node).unwrap();
    to_json_text(&parse_varlena(&b).unwrap()).unwrap()
}

fn j(node: &Node<'_>) -> J {
    serde_json::from_str(&text_of(node)).unwrap()
}

const G: &str = "https://maps.googleapis.com/maps/api/place/photo?maxwidth=1600&photo_reference=AAA&key=SECRET123";
const NOW: &str = "2026-11-24T00:00:00.000000Z";

fn venue() -> Vec<u8> {
    bytes(&format!(
        r#"[
        {{"provider_url":"{G}","provider":"google_places","upload_status":"failed","retry_count":1,
          "error_details":{{"error_type":"rate_limited","status_code":429}},"attribution":"keep me"}},
        {{"provider_url":"https://x/b.jpg","upload_status":"failed","error_details":{{"error_type":"not_found"}}}},
        {{"provider_url":"https://x/c.jpg","upload_status":"failed","retry_count":3,"error_details":{{"error_type":"rate_limited"}}}},
        {{"provider_url":"https://x/d.jpg","upload_status":"failed","error_details":{{"error_type":"http_error"}}}},
        {{"provider_url":"https://x/e.jpg","upload_status":"uploaded"}},
        {{"provider_url":"https://x/f.jpg","upload_status":"permanently_failed"}},
        {{"upload_status":"failed","error_details":{{"error_type":"rate_limited"}}}},
        {{"url":"https://x/h.jpg","upload_status":"failed","error_details":{{"error_type":"bad_gateway"}}}},
        {{"provider_url":"https://x/i.jpg","upload_status":"failed","retry_count":"abc","error_details":{{"error_type":"rate_limited"}}}},
        {{"provider_url":"https://x/j.jpg","upload_status":"failed","retry_count":"2","error_details":{{"error_type":"rate_limited"}}}},
        {{"provider_url":"https://x/k.jpg","upload_status":"failed"}},
        "loose"
    ]"#
    ))
}

/// [`venue`]'s array, built once.
fn venue_array() -> Container<'static> {
    static VENUE: LazyLock<Vec<u8>> = LazyLock::new(venue);
    parse_varlena(&VENUE).unwrap()
}

#[test]
fn every_failed_element_has_exactly_one_place() {
    let arr = venue_array();
    let p = Policy::default();
    let plan = p.plan(arr).unwrap();
    let queued: Vec<usize> = plan.queue.iter().map(|q| q.index).collect();
    assert_eq!(
        queued,
        vec![0, 7, 9],
        "transient, retries left, a source URL"
    );
    assert_eq!(plan.queued_elements, 3);
    assert_eq!(plan.queue[0].provider, "google_places");
    assert!(!plan.queue[0].redacted_url.contains("SECRET123"));
    assert_eq!(plan.queue[1].provider, "unknown");
    assert_eq!(plan.queue[2].retry_count, 2, "numeric strings are numbers");
    assert_eq!(
        plan.finalize,
        vec![
            (1, FinalReason::PermanentError),
            (2, FinalReason::RetriesExhausted),
            (6, FinalReason::NoSourceUrl)
        ]
    );
    assert_eq!(
        plan.review,
        vec![
            (3, ReviewReason::AmbiguousError),
            (10, ReviewReason::NoErrorType)
        ]
    );
    assert_eq!(plan.skipped.len(), 1);
    assert_eq!(plan.skipped[0].index, 8);
    assert!(
        plan.skipped[0].reason.contains("retry_count"),
        "{:?}",
        plan.skipped
    );
    assert_eq!(plan.permanently_failed, 1);
    assert_eq!(plan.decision(), ScanDecision::Transient);
    // summary's retryable is the same rule.
    let s = summarize(
        parse_varlena(&bytes(&format!(
            r#"[{{"provider_url":"{G}","upload_status":"failed","error_details":{{"error_type":"rate_limited"}}}},
                {{"upload_status":"failed","error_details":{{"error_type":"rate_limited"}}}},
                {{"url":"https://x/h.jpg","upload_status":"failed","retry_count":"1","error_details":{{"error_type":"bad_gateway"}}}}]"#
        )))
        .unwrap(),
        &Classifier::builtin(),
        3,
    )
    .unwrap();
    assert_eq!(s.retryable, 2);
}

#[test]
fn finalisation_says_why_and_keeps_everything_else() {
    let arr = venue_array();
    let p = Policy::default();
    let plan = p.plan(arr).unwrap();
    let out = j(&p.finalize(arr, &plan, NOW).unwrap().unwrap());
    let before: J = serde_json::from_str(&to_json_text(&arr).unwrap()).unwrap();
    for i in [1, 2, 6] {
        assert_eq!(out[i]["upload_status"], "permanently_failed");
        assert_eq!(out[i]["finalized_at"], NOW);
    }
    assert_eq!(
        out[6]["error_details"]["error_type"],
        "invalid_provider_url"
    );
    assert_eq!(
        out[6]["error_details"]["previous"]["error_type"],
        "rate_limited"
    );
    assert_eq!(out[1]["error_details"], before[1]["error_details"]);
    for i in [0, 3, 4, 5, 7, 8, 9, 10, 11] {
        assert_eq!(out[i], before[i], "element {i} untouched");
    }
}

#[test]
fn write_back_follows_the_state_machine() {
    let arr = venue_array();
    let p = Policy::default();
    let h = url_hash(G);
    let t = p.claim_target(arr, &h, false).unwrap().unwrap();
    assert_eq!(t.url, G);
    assert_eq!(t.retry_count, 1);

    let ok = Reported::uploaded(
        "https://ik.imagekit.io/d/gp-1.jpg",
        "/venues/v/gp-1.jpg",
        Some("f1"),
        None,
    )
    .unwrap();
    // The outcome of an attempt on `G`'s image, or on the image with this hash, and the
    // venue's array it writes.
    let apply_to =
        |h: &UrlHash, r: &Reported<'static>| p.apply(arr, h, false, r, NOW, 1.0).unwrap();
    let apply = |r: &Reported<'static>| apply_to(&h, r);
    let written = |r: &Reported<'static>| j(&replace_elements(arr, apply(r).replacements).unwrap());
    let fail = |et: &'static str| Reported::failed(et, Some(500), "boom", None).unwrap();
    // What write-back answers, logs and does with the job: uploaded; transient with
    // retries left (queued again); ambiguous (left for review, not queued again);
    // permanent (finalised at once).
    for (r, want) in [
        (
            &ok,
            (
                WriteBackStatus::Uploaded,
                AttemptOutcome::Uploaded,
                JobNext::Delete,
            ),
        ),
        (
            &fail("server_error"),
            (
                WriteBackStatus::Failed,
                AttemptOutcome::Failed,
                JobNext::Retry { wait_seconds: 60.0 },
            ),
        ),
        (
            &fail("http_error"),
            (
                WriteBackStatus::Failed,
                AttemptOutcome::Review,
                JobNext::Delete,
            ),
        ),
        (
            &fail("not_found"),
            (
                WriteBackStatus::PermanentlyFailed,
                AttemptOutcome::PermanentlyFailed,
                JobNext::Delete,
            ),
        ),
    ] {
        let a = apply(r);
        assert_eq!((a.status, a.outcome, a.job), want, "{r:?}");
    }
    let out = written(&ok);
    assert_eq!(out[0]["upload_status"], "uploaded");
    assert_eq!(out[0]["retry_count"], 2);
    assert_eq!(out[0]["imagekit_file_id"], "f1");
    assert_eq!(out[0]["attribution"], "keep me");
    assert!(out[0].get("error_details").is_none());
    assert_eq!(out[0]["provider_url"], G);
    let out = written(&fail("http_error"));
    assert_eq!(out[0]["upload_status"], "failed");
    assert_eq!(out[0]["error_details"]["error_type"], "http_error");
    assert_eq!(out[0]["error_details"]["retry_attempt"], 2);
    let out = written(&fail("not_found"));
    assert_eq!(out[0]["finalized_at"], NOW);
    // an image the application removed
    let a = apply_to(&url_hash("https://gone"), &ok);
    assert_eq!(a.status, WriteBackStatus::Superseded);
    assert!(a.replacements.is_empty());
    // already uploaded by the application
    let a = apply_to(&url_hash("https://x/e.jpg"), &ok);
    assert_eq!(a.note, Some("image already uploaded by the application"));
    // permanently failed: only a forced job may attempt it
    let f = url_hash("https://x/f.jpg");
    assert!(p.claim_target(arr, &f, false).unwrap().is_none());
    assert!(p.claim_target(arr, &f, true).unwrap().is_some());
    assert_eq!(
        p.apply(arr, &f, false, &ok, NOW, 1.0).unwrap().status,
        WriteBackStatus::Superseded
    );
    assert_eq!(
        p.apply(arr, &f, true, &ok, NOW, 1.0).unwrap().status,
        WriteBackStatus::Uploaded
    );
}

#[test]
fn a_source_in_url_is_kept_as_provider_url_after_upload() {
    let arr = venue_array();
    let p = Policy::default();
    let h = url_hash("https://x/h.jpg");
    assert_eq!(
        p.claim_target(arr, &h, false).unwrap().unwrap().url,
        "https://x/h.jpg"
    );
    let ok = Reported::uploaded(
        "https://ik.imagekit.io/d/x.jpg",
        "/venues/v/x.jpg",
        None,
        None,
    )
    .unwrap();
    let out = j(&replace_elements(
        arr,
        p.apply(arr, &h, false, &ok, NOW, 1.0).unwrap().replacements,
    )
    .unwrap());
    assert_eq!(out[7]["url"], "https://ik.imagekit.io/d/x.jpg");
    assert_eq!(out[7]["provider_url"], "https://x/h.jpg");
}

#[test]
fn duplicate_copies_share_one_job_and_all_get_the_outcome() {
    let b = bytes(
        r#"[{"provider_url":"https://x/a.jpg","upload_status":"failed","retry_count":0,"error_details":{"error_type":"rate_limited"},"n":1},
            {"provider_url":"https://x/b.jpg","upload_status":"uploaded"},
            {"provider_url":"https://x/a.jpg","upload_status":"failed","retry_count":2,"error_details":{"error_type":"rate_limited"},"n":2}]"#,
    );
    let arr = parse_varlena(&b).unwrap();
    let p = Policy::default();
    let plan = p.plan(arr).unwrap();
    assert_eq!(plan.queue.len(), 1);
    assert_eq!(plan.queued_elements, 2);
    assert_eq!(
        plan.queue[0].retry_count, 2,
        "the highest count of the copies"
    );
    let h = url_hash("https://x/a.jpg");
    assert_eq!(
        p.claim_target(arr, &h, false).unwrap().unwrap().retry_count,
        2
    );
    let fail = Reported::failed("rate_limited", Some(429), "slow down", Some(5.0)).unwrap();
    let a = p.apply(arr, &h, false, &fail, NOW, 1.0).unwrap();
    assert_eq!(
        a.status,
        WriteBackStatus::PermanentlyFailed,
        "3rd attempt of the copy at 2"
    );
    let out = j(&replace_elements(arr, a.replacements).unwrap());
    for i in [0, 2] {
        assert_eq!(out[i]["upload_status"], "permanently_failed");
        assert_eq!(out[i]["retry_count"], 3);
    }
    assert_eq!(out[0]["n"], 1);
    assert_eq!(out[2]["n"], 2);
}

#[test]
fn outcome_records_are_validated() {
    let r = OutcomeRecord::uploaded(1, "t", "javascript:alert(1)", "/v/x.jpg", None);
    assert!(r.reported(None).unwrap_err().0.contains("http or https"));
    for bad in [
        "",
        "https:///x",
        "https://:443/x",
        "https://u@/x",
        "https://h/x y",
    ] {
        let r = OutcomeRecord::uploaded(1, "t", bad, "/v/x.jpg", None);
        assert!(r.reported(None).is_err(), "{bad}");
    }
    let r = OutcomeRecord::uploaded(1, "t", "https://evil.example/x.jpg", "/v/x.jpg", None);
    assert!(r.reported(None).is_ok());
    assert!(r
        .reported(Some("https://ik.imagekit.io/"))
        .unwrap_err()
        .0
        .contains("imagekit_url_prefix"));
    let r = OutcomeRecord::failed(1, "t", "rate limited!", None, "m", None);
    assert!(r.reported(None).is_err());
    let r = OutcomeRecord::failed(1, "t", "rate_limited", Some(42), "m", None);
    assert!(r.reported(None).unwrap_err().0.contains("status_code"));
    let r = OutcomeRecord::failed(1, "t", "rate_limited", None, "m", Some(-1.0));
    assert!(r.reported(None).is_err());
    let both: OutcomeRecord = serde_json::from_value(json!({"job_id":1,"lease_token":"t","url":"https://a/b","imagekit_path":"/x","error_type":"x"})).unwrap();
    assert!(both.reported(None).unwrap_err().0.contains("not both"));
    assert!(serde_json::from_value::<OutcomeRecord>(
        json!({"job_id":1,"lease_token":"t","surprise":1})
    )
    .is_err());
    // The uploader's JSON is what the extension reads.
    let f = OutcomeRecord::failed(7, "t", "rate_limited", Some(429), "m", Some(3.0));
    assert_eq!(
        serde_json::to_string(&f).unwrap(),
        r#"{"job_id":7,"lease_token":"t","error_type":"rate_limited","status_code":429,"message":"m","retry_after_seconds":3.0}"#
    );
}

#[test]
fn messages_are_cleaned_before_they_are_stored() {
    let m = clean_message(&format!("bad\u{0} {G} {}", "x".repeat(1000)));
    assert!(!m.contains('\u{0}'));
    assert!(!m.contains("SECRET123"));
    assert!(m.len() <= MAX_MESSAGE);
}

#[test]
fn retry_counts_saturate() {
    let b = bytes(
        r#"[{"provider_url":"https://x/a.jpg","upload_status":"failed","retry_count":1e300,"error_details":{"error_type":"rate_limited"}}]"#,
    );
    let arr = parse_varlena(&b).unwrap();
    let p = Policy {
        max_retries: i64::MAX,
        ..Policy::default()
    };
    let h = url_hash("https://x/a.jpg");
    let fail = Reported::failed("rate_limited", None, "m", None).unwrap();
    let a = p.apply(arr, &h, true, &fail, NOW, 1.0).unwrap();
    assert_eq!(a.retry_count, Some(i64::MAX));
    assert_eq!(a.status, WriteBackStatus::PermanentlyFailed);
}

#[test]
fn purge_removes_only_permanently_failed_and_redacts_copies() {
    let b = bytes(&format!(
        r#"[{{"provider_url":"https://x/a.jpg","upload_status":"permanently_failed","url":"{G}","note":"see {G}"}},
            {{"provider_url":"https://x/b.jpg","upload_status":"failed"}},
            {{"upload_status":7}}]"#
    ));
    let arr = parse_varlena(&b).unwrap();
    let (kept, removed) = purge_permanently_failed(arr, None).unwrap();
    assert_eq!(j(&kept).as_array().unwrap().len(), 2);
    assert_eq!(removed.len(), 1);
    let copy = text_of(&redacted_copy(Value::Container(removed[0].obj)).unwrap());
    assert!(!copy.contains("SECRET123"), "{copy}");
    assert!(copy.contains("photo_reference=AAA"));
}

#[test]
fn backoff() {
    assert_eq!(backoff_seconds(30.0, 1, None, 1.0), 30.0);
    assert_eq!(backoff_seconds(30.0, 3, None, 1.0), 120.0);
    assert_eq!(backoff_seconds(30.0, 1, Some(90.0), 1.0), 90.0);
    assert_eq!(backoff_seconds(30.0, 1000, None, 1.0), 86_400.0);
    assert_eq!(backoff_seconds(30.0, 1, Some(f64::INFINITY), 1.0), 30.0);
    assert_eq!(backoff_seconds(0.0, 2, None, 1.2), 0.0);
}

// ---------------------------------------------------------------------------------
// Property tests: generated arrays (every kind of element, duplicates, malformed keys)
// and generated outcome sequences (successes, transient, permanent and ambiguous
// failures), run through the whole lifecycle.

/// Every built-in error type, then types in neither list; the last, "", is never
/// reported as a failure.
static ERROR_TYPES: std::sync::LazyLock<Vec<&'static str>> = std::sync::LazyLock::new(|| {
    let others = ["http_error", "download_failed", "unknown_error", ""];
    (crate::classify::BUILTIN_TRANSIENT.iter())
        .chain(crate::classify::BUILTIN_PERMANENT)
        .chain(&others)
        .copied()
        .collect()
});

fn element() -> impl Strategy<Value = J> {
    (
        prop::sample::select(vec![
            "failed",
            "failed",
            "failed",
            "permanently_failed",
            "uploaded",
            "skipped_dev",
            "external",
            "-",
        ]),
        0usize..6,                                      // url pool: duplicates happen
        prop::sample::select(vec![0u8, 0, 0, 1, 2, 3]), // 0 provider_url, 1 url only, 2 neither, 3 both
        prop::option::of(prop::sample::select(ERROR_TYPES.to_vec())),
        prop::sample::select(vec![
            J::Null,
            json!(0),
            json!(1),
            json!(2),
            json!(3),
            json!(7),
            json!("1"),
            json!("2"),
            json!(" 0 "),
            json!(2.5),
        ]),
        prop::sample::select(vec![0u8, 0, 0, 0, 0, 1, 2, 3]), // malformations
    )
        .prop_map(|(status, url, source, et, rc, bad)| {
            let mut o = serde_json::Map::new();
            if status != "-" {
                o.insert("upload_status".into(), json!(status));
            }
            let u = format!("https://p{url}.example/img.jpg?key=K{url}");
            match source {
                0 => {
                    o.insert("provider_url".into(), json!(u));
                }
                1 => {
                    o.insert("url".into(), json!(u));
                }
                3 => {
                    o.insert("provider_url".into(), json!(u));
                    o.insert("url".into(), json!("https://ik.imagekit.io/x"));
                }
                _ => {}
            }
            if let Some(et) = et {
                o.insert("error_details".into(), json!({"error_type": et}));
            }
            if !rc.is_null() {
                o.insert("retry_count".into(), rc);
            }
            o.insert("provider".into(), json!("here"));
            o.insert("keep".into(), json!({"nested": [1, "two"]}));
            match bad {
                1 => {
                    o.insert("retry_count".into(), json!("abc"));
                }
                2 => {
                    o.insert("error_details".into(), json!("oops"));
                }
                3 => {
                    o.insert("upload_status".into(), json!(5));
                }
                _ => {}
            }
            J::Object(o)
        })
}

fn array() -> impl Strategy<Value = J> {
    prop::collection::vec(
        prop_oneof![9 => element(), 1 => Just(json!("loose")), 1 => Just(json!(null))],
        0..12,
    )
    .prop_map(J::Array)
}

#[derive(Debug, Clone, Copy)]
enum Step {
    Success,
    Fail(usize),
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(
        prop_oneof![1 => Just(Step::Success), 3 => (0..ERROR_TYPES.len() - 1).prop_map(Step::Fail)],
        1..40,
    )
}

/// Runs the queue to completion: scan, then attempt every queued image with the next
/// outcome, until nothing is queued. Returns the final array and the attempts made per
/// identity.
fn run(
    p: &Policy,
    start: &J,
    outcomes: &[Step],
) -> (J, std::collections::HashMap<UrlHash, i64>, usize) {
    let mut cur = bytes(&start.to_string());
    let mut attempts = std::collections::HashMap::new();
    let mut next = 0usize;
    let mut rounds = 0;
    loop {
        rounds += 1;
        assert!(rounds < 200, "the lifecycle did not terminate");
        let arr = parse_varlena(&cur).unwrap();
        let plan = p.plan(arr).unwrap();
        // The scan finalises what can never be retried.
        if let Some(node) = p.finalize(arr, &plan, NOW).unwrap() {
            cur = encode(&node).unwrap();
            continue;
        }
        let Some(item) = plan.queue.first() else {
            break;
        };
        let target = p.claim_target(arr, &item.hash, false).unwrap();
        assert!(target.is_some(), "a queued image must be claimable");
        let step = outcomes[next % outcomes.len()];
        next += 1;
        let reported = match step {
            Step::Success => Reported::uploaded(
                "https://ik.imagekit.io/d/x.jpg",
                "/venues/v/x.jpg",
                None,
                None,
            )
            .unwrap(),
            Step::Fail(i) => Reported::failed(ERROR_TYPES[i], None, "m", None).unwrap(),
        };
        let a = p
            .apply(arr, &item.hash, false, &reported, NOW, 1.0)
            .unwrap();
        assert_ne!(a.status, WriteBackStatus::Superseded);
        *attempts.entry(item.hash).or_insert(0) += 1;
        let node = replace_elements(arr, a.replacements).unwrap();
        cur = encode(&node).unwrap();
    }
    let arr = parse_varlena(&cur).unwrap();
    (
        serde_json::from_str(&to_json_text(&arr).unwrap()).unwrap(),
        attempts,
        rounds,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Every element ends uploaded, permanently failed, in a review state, untouched or
    /// skipped, within max_retries attempts; nothing is lost; nothing stays queued.
    #[test]
    fn the_lifecycle_terminates_and_loses_nothing(arr in array(), outcomes in steps(), max in 1i64..5) {
        let p = Policy { max_retries: max, ..Policy::default() };
        let (end, attempts, _) = run(&p, &arr, &outcomes);
        let before = arr.as_array().unwrap();
        let after = end.as_array().unwrap();
        prop_assert_eq!(before.len(), after.len(), "no element is added or removed");
        for n in attempts.values() {
            prop_assert!(*n <= max, "an image was attempted {} times (max {})", n, max);
        }
        let end_bytes = bytes(&end.to_string());
        let plan = p.plan(parse_varlena(&end_bytes).unwrap()).unwrap();
        prop_assert!(plan.queue.is_empty());
        prop_assert!(plan.finalize.is_empty());
        for (b, a) in before.iter().zip(after) {
            if let (Some(bo), Some(ao)) = (b.as_object(), a.as_object()) {
                for k in bo.keys() {
                    prop_assert!(ao.contains_key(k) || k == "error_details" || k == "finalized_at",
                        "key {} lost", k);
                }
                prop_assert_eq!(&bo["keep"], &ao["keep"]);
            } else {
                prop_assert_eq!(b, a, "non-objects untouched");
            }
        }
    }

    /// The counts of every reporting path agree on any array.
    #[test]
    fn counts_agree(arr in array(), max in 1i64..5) {
        let p = Policy { max_retries: max, ..Policy::default() };
        let b = bytes(&arr.to_string());
        let c = parse_varlena(&b).unwrap();
        let plan = p.plan(c).unwrap();
        // Every failed element is in exactly one place.
        let failed_readable = plan.queued_elements + plan.finalize.len() + plan.review.len();
        let mut failed_elements = 0;
        for e in elements(c) {
            if let Ok(Ok(e)) = e {
                if e.status == Status::Failed { failed_elements += 1; }
            }
        }
        prop_assert_eq!(failed_readable, failed_elements);
        // summary's retryable (when summary accepts the array) is the queue's count.
        if let Ok(s) = summarize(c, &p.classifier, max) {
            prop_assert_eq!(s.retryable as usize, plan.queued_elements);
            prop_assert_eq!((s.failed + s.permanently_failed) as usize, plan.failures);
        }
        // Distinct identities among queued elements = jobs.
        let mut ids = std::collections::HashSet::new();
        for e in elements(c).flatten().flatten() {
            if p.state(&e) == State::Queued { ids.insert(e.hash().unwrap()); }
        }
        prop_assert_eq!(ids.len(), plan.queue.len());
    }

    /// Any element a failure patch does not target survives byte for byte.
    #[test]
    fn patches_keep_everything_else(arr in array(), outcome in 0..ERROR_TYPES.len() - 1) {
        let p = Policy::default();
        let b = bytes(&arr.to_string());
        let c = parse_varlena(&b).unwrap();
        let plan = p.plan(c).unwrap();
        let Some(item) = plan.queue.first() else { return Ok(()) };
        let r = Reported::failed(ERROR_TYPES[outcome], None, "m", None).unwrap();
        let a = p.apply(c, &item.hash, false, &r, NOW, 1.0).unwrap();
        let touched: Vec<usize> = a.replacements.iter().map(|(i, _)| *i).collect();
        let out = encode(&replace_elements(c, a.replacements).unwrap()).unwrap();
        let oc = parse_varlena(&out).unwrap();
        for k in 0..c.len() {
            if touched.contains(&k) { continue; }
            let x = encode(&Node::Raw(c.array_get(k).unwrap().unwrap())).unwrap();
            let y = encode(&Node::Raw(oc.array_get(k).unwrap().unwrap())).unwrap();
            prop_assert_eq!(x, y);
        }
    }
}

/// Depth: the queue's walks never look into values they copy verbatim, and the one copy
/// built level by level (`redacted_copy`) refuses more than `MAX_DEPTH` levels with a
/// typed error; all of it on a 256 KiB stack.
/// Attack class: Resource exhaustion (../shared/spec/attack-classes.md).
mod depth {
    use super::*;
    use crate::jsonb::deep::{nested_arrays, nested_objects, on_small_stack};
    use crate::jsonb::{TooDeep, MAX_DEPTH};

    /// `depth` levels of `{"a": …}` around an object holding a secret URL.
    fn secret_at(depth: usize) -> String {
        format!(
            "{}{{\"u\": \"{G}\"}}{}",
            "{\"a\": ".repeat(depth - 1),
            "}".repeat(depth - 1)
        )
    }

    #[test]
    fn redacted_copy_at_and_below_the_limit_copies_everything() {
        on_small_stack(|| {
            for d in [1, 2, MAX_DEPTH - 1, MAX_DEPTH] {
                for b in [nested_arrays(d), nested_objects(d)] {
                    let c = parse_varlena(&b).unwrap();
                    let copy = redacted_copy(Value::Container(c)).unwrap();
                    assert_eq!(encode(&copy).unwrap(), b, "depth {d}");
                }
                let b = bytes(&secret_at(d));
                let copy = redacted_copy(Value::Container(parse_varlena(&b).unwrap())).unwrap();
                let text = text_of(&copy);
                assert!(!text.contains("SECRET123"), "depth {d}");
                assert!(text.contains("photo_reference=AAA"), "depth {d}");
            }
        });
    }

    #[test]
    fn redacted_copy_refuses_deeper_values_with_a_typed_error() {
        on_small_stack(|| {
            for d in [MAX_DEPTH + 1, 10_000, 12_001, 100_000] {
                for b in [nested_arrays(d), nested_objects(d)] {
                    let c = parse_varlena(&b).unwrap();
                    let e = redacted_copy(Value::Container(c)).unwrap_err();
                    assert_eq!(e, ImageError::TooDeep(TooDeep { limit: MAX_DEPTH }));
                    assert_eq!(e.to_string(), "jsonb value nested deeper than 1000 levels");
                }
            }
        });
    }

    /// An array with a 10,000-deep element next to image elements (one of which holds a
    /// 10,000-deep key of its own).
    fn venue_with_deep_neighbours(deep: &[u8], deep_obj: &[u8], status: &str) -> Vec<u8> {
        let deep = Value::Container(parse_varlena(deep).unwrap());
        let deep_obj = Value::Container(parse_varlena(deep_obj).unwrap());
        let Node::Object(mut pairs) = parse_json(&format!(
            r#"{{"provider_url":"{G}","upload_status":"{status}","retry_count":1,
                 "error_details":{{"error_type":"rate_limited"}}}}"#
        ))
        .unwrap() else {
            panic!("an object")
        };
        pairs.push((Cow::Borrowed(&b"junk"[..]), Node::Raw(deep_obj)));
        let image = Node::Object(pairs);
        let other = parse_json(
            r#"{"provider_url":"https://x/b.jpg","upload_status":"failed","error_details":{"error_type":"not_found"}}"#,
        )
        .unwrap();
        encode(&Node::Array(vec![Node::Raw(deep), image, other])).unwrap()
    }

    /// Runs `test` on a small stack with [`venue_with_deep_neighbours`]'s array (its image
    /// element with this status) and the bytes of its deep element and deep key.
    fn with_deep_neighbours(
        status: &'static str,
        test: impl FnOnce(Container<'_>, &[u8], &[u8]) + Send + 'static,
    ) {
        on_small_stack(move || {
            let (deep, deep_obj) = (nested_arrays(10_000), nested_objects(10_000));
            let b = venue_with_deep_neighbours(&deep, &deep_obj, status);
            test(parse_varlena(&b).unwrap(), &deep, &deep_obj);
        });
    }

    #[test]
    fn write_back_next_to_deep_elements_works() {
        with_deep_neighbours("failed", |arr, deep, deep_obj| {
            let p = Policy::default();
            let h = url_hash(G);
            let plan = p.plan(arr).unwrap();
            assert_eq!(plan.queue.len(), 1);
            assert_eq!(
                p.claim_target(arr, &h, false).unwrap().unwrap().retry_count,
                1
            );
            let ok = Reported::uploaded("https://ik.imagekit.io/d/x.jpg", "/v/x.jpg", None, None)
                .unwrap();
            let fail = Reported::failed("rate_limited", Some(429), "slow", None).unwrap();
            for reported in [ok, fail] {
                let a = p.apply(arr, &h, false, &reported, NOW, 1.0).unwrap();
                assert_eq!(a.retry_count, Some(2));
                let out = encode(&replace_elements(arr, a.replacements).unwrap()).unwrap();
                let oc = parse_varlena(&out).unwrap();
                // The deep element and the deep key are copied byte for byte.
                let first = oc.array_get(0).unwrap().unwrap().as_array().unwrap();
                assert_eq!(first.raw_bytes(), &deep[4..]);
                let img = oc.array_get(1).unwrap().unwrap().as_object().unwrap();
                let Some(Value::Container(junk)) = img.get("junk").unwrap() else {
                    panic!("junk kept")
                };
                assert_eq!(junk.raw_bytes(), &deep_obj[4..]);
                assert_eq!(
                    img.get("retry_count").unwrap().unwrap().type_name(),
                    "number"
                );
                assert_eq!(
                    oc.array_get(2)
                        .unwrap()
                        .unwrap()
                        .as_object()
                        .unwrap()
                        .raw_bytes(),
                    arr.array_get(2)
                        .unwrap()
                        .unwrap()
                        .as_object()
                        .unwrap()
                        .raw_bytes()
                );
            }
            // The scan's finalisation copies them the same way.
            let fin = p.finalize(arr, &plan, NOW).unwrap().unwrap();
            let out = encode(&fin).unwrap();
            let oc = parse_varlena(&out).unwrap();
            let first = oc.array_get(0).unwrap().unwrap().as_array().unwrap();
            assert_eq!(first.raw_bytes(), &deep[4..]);
            let other = oc.array_get(2).unwrap().unwrap().as_object().unwrap();
            assert_eq!(
                other.get("upload_status").unwrap().unwrap().as_str(),
                Some("permanently_failed")
            );
            // And the summary reads past them.
            let s = summarize(arr, &p.classifier, p.max_retries).unwrap();
            assert_eq!((s.total, s.failed, s.retryable), (2, 2, 1));
        });
    }

    #[test]
    fn purge_next_to_deep_elements_keeps_them_and_refuses_a_deep_removed_copy() {
        with_deep_neighbours("permanently_failed", |arr, deep, _| {
            let (kept, removed) = purge_permanently_failed(arr, None).unwrap();
            let out = encode(&kept).unwrap();
            let oc = parse_varlena(&out).unwrap();
            assert_eq!(oc.len(), 2);
            let first = oc.array_get(0).unwrap().unwrap().as_array().unwrap();
            assert_eq!(first.raw_bytes(), &deep[4..]);
            // The removed element holds a 10,000-deep key: its redacted copy for the
            // attempt log is refused (54001 in SQL), never a crash.
            assert_eq!(removed.len(), 1);
            assert_eq!(
                redacted_copy(Value::Container(removed[0].obj)).unwrap_err(),
                ImageError::TooDeep(TooDeep::MAX)
            );
            // At the limit, the removed copy is kept, redacted.
            let d = MAX_DEPTH - 1; // the element itself is one level
            let shallow = nested_objects(d);
            let b = venue_with_deep_neighbours(deep, &shallow, "permanently_failed");
            let arr = parse_varlena(&b).unwrap();
            let (_, removed) = purge_permanently_failed(arr, None).unwrap();
            let copy = text_of(&redacted_copy(Value::Container(removed[0].obj)).unwrap());
            assert!(!copy.contains("SECRET123"));
        });
    }
}
