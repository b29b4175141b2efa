use super::*;
use crate::jsonb::{encode, parse_json, parse_varlena, to_json_text};
use proptest::prelude::*;

fn bytes(json: &str) -> Vec<u8> {
    encode(&parse_json(json).unwrap()).unwrap()
}

fn text_of(node: &Node<'_>) -> String {
    let b = encode(node).unwrap();
    to_json_text(&parse_varlena(&b).unwrap()).unwrap()
}

const G: &str = "https://maps.googleapis.com/maps/api/place/photo?maxwidth=1600&photo_reference=AAA&key=SECRET123";

#[test]
fn redaction() {
    assert_eq!(
        redact_url(G),
        "https://maps.googleapis.com/maps/api/place/photo?maxwidth=1600&photo_reference=AAA&key=REDACTED"
    );
    assert_eq!(
        redact_url("https://u:p@host/x?Token=abc#f"),
        "https://host/x?Token=REDACTED#f"
    );
    let t = redact_text(&format!(
        "error sending request for url ({G}) after 3 tries"
    ));
    assert!(!t.contains("SECRET123"), "{t}");
    assert!(t.starts_with("error sending request for url (https://maps"));
}

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
        "loose"
    ]"#
    ))
}

#[test]
fn retryable_are_failed_transient_under_the_cap() {
    let b = venue();
    let arr = parse_varlena(&b).unwrap();
    let r = retryable_images(arr, &Classifier::builtin(), 3).unwrap();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].index, 0);
    assert_eq!(r[0].provider, "google_places");
    assert_eq!(r[0].retry_count, 1);
    assert_eq!(r[0].hash, url_hash(G));
    assert!(!r[0].redacted_url.contains("SECRET123"));
}

#[test]
fn success_patch_touches_only_its_element() {
    let b = venue();
    let arr = parse_varlena(&b).unwrap();
    let (i, obj) = find_by_hash(arr, &url_hash(G)).unwrap().unwrap();
    let s = Success {
        url: "https://ik.imagekit.io/x/gp-1.jpg",
        imagekit_path: "/venues/v/gp-1.jpg",
        file_id: Some("abc"),
        now: "2026-11-24T00:00:00Z",
    };
    let out = patch_success(arr, i, obj, &s).unwrap();
    let out_b = encode(&out).unwrap();
    let out_arr = parse_varlena(&out_b).unwrap();
    // Every other element is byte-identical.
    for k in 1..arr.len() {
        let a = encode(&Node::Raw(arr.array_get(k).unwrap().unwrap())).unwrap();
        let b2 = encode(&Node::Raw(out_arr.array_get(k).unwrap().unwrap())).unwrap();
        assert_eq!(a, b2);
    }
    let first = to_json_text(&out_arr.array_get(0).unwrap().unwrap().as_object().unwrap()).unwrap();
    assert_eq!(
        first,
        format!(
            r#"{{"url": "https://ik.imagekit.io/x/gp-1.jpg", "provider": "google_places", "retried_at": "2026-11-24T00:00:00Z", "attribution": "keep me", "retry_count": 2, "provider_url": "{G}", "imagekit_path": "/venues/v/gp-1.jpg", "upload_status": "uploaded", "imagekit_file_id": "abc"}}"#
        )
    );
}

#[test]
fn failure_patch_and_outcomes() {
    assert_eq!(
        failure_outcome(0, ErrorClass::Transient, 3),
        FailureOutcome {
            retry_count: 1,
            permanent: false
        }
    );
    assert_eq!(
        failure_outcome(2, ErrorClass::Transient, 3),
        FailureOutcome {
            retry_count: 3,
            permanent: true
        }
    );
    assert_eq!(
        failure_outcome(0, ErrorClass::Permanent, 3),
        FailureOutcome {
            retry_count: 1,
            permanent: true
        }
    );
    assert_eq!(
        failure_outcome(0, ErrorClass::Ambiguous, 3),
        FailureOutcome {
            retry_count: 1,
            permanent: false
        }
    );
    let b = venue();
    let arr = parse_varlena(&b).unwrap();
    let (i, obj) = find_by_hash(arr, &url_hash(G)).unwrap().unwrap();
    let f = Failure {
        error_type: "rate_limited",
        status_code: Some(429),
        message: &format!("HTTP 429 from {G}"),
        now: "2026-11-24T00:00:00Z",
    };
    let out = patch_failure(
        arr,
        i,
        obj,
        &f,
        failure_outcome(1, ErrorClass::Transient, 3),
    )
    .unwrap();
    let t = text_of(&out);
    // The message is redacted: only provider_url (the app's data) still holds the key.
    assert_eq!(t.matches("SECRET123").count(), 1);
    assert!(t.contains(r#""error_details": {"error": "HTTP 429 from https://maps.googleapis.com/maps/api/place/photo?maxwidth=1600&photo_reference=AAA&key=REDACTED", "timestamp": "2026-11-24T00:00:00Z", "error_type": "rate_limited", "status_code": 429, "retry_attempt": 2}"#), "{t}");
    assert!(t.contains(r#""attribution": "keep me""#));
    let out = patch_failure(
        arr,
        i,
        obj,
        &f,
        failure_outcome(2, ErrorClass::Transient, 3),
    )
    .unwrap();
    let t = text_of(&out);
    assert!(
        t.contains(r#""upload_status": "permanently_failed""#)
            && t.contains(r#""finalized_at": "2026-11-24T00:00:00Z""#)
    );
}

#[test]
fn scan_decisions_and_finalisation() {
    let c = Classifier::builtin();
    let b = venue();
    let s = scan_venue(parse_varlena(&b).unwrap(), &c, 3, "NOW").unwrap();
    assert_eq!(s.decision, ScanDecision::Transient);
    assert_eq!(s.finalized_count, 2); // not_found, and rate_limited with retry_count 3
    let t = text_of(s.finalized.as_ref().unwrap());
    assert_eq!(t.matches(r#""finalized_at": "NOW""#).count(), 2);
    assert!(
        t.contains(r#""error_type": "http_error"}, "upload_status": "failed""#),
        "ambiguous stays failed: {t}"
    );
    for (json, d) in [
        (
            r#"[{"upload_status":"permanently_failed"}]"#,
            ScanDecision::Permanent,
        ),
        (
            r#"[{"upload_status":"failed","error_details":{"error_type":"odd"}}]"#,
            ScanDecision::Ambiguous,
        ),
        (r#"[{"upload_status":"failed"}]"#, ScanDecision::Ambiguous),
        (r#"[{"upload_status":"uploaded"}]"#, ScanDecision::Nothing),
        (
            r#"[{"upload_status":"failed","provider_url":"u","error_details":{"error_type":"rate_limited"}},{"upload_status":"failed","error_details":{"error_type":"not_found"}}]"#,
            ScanDecision::Transient,
        ),
    ] {
        let b = bytes(json);
        assert_eq!(
            scan_venue(parse_varlena(&b).unwrap(), &c, 3, "NOW")
                .unwrap()
                .decision,
            d,
            "{json}"
        );
    }
}

#[test]
fn purge_removes_only_permanently_failed() {
    let b = venue();
    let (node, removed) = purge_permanently_failed(parse_varlena(&b).unwrap(), None).unwrap();
    assert_eq!(removed.len(), 1);
    let out = encode(&node).unwrap();
    assert_eq!(parse_varlena(&out).unwrap().len(), 6);
    let (_, removed) =
        purge_permanently_failed(parse_varlena(&b).unwrap(), Some(&url_hash("https://x/zzz")))
            .unwrap();
    assert!(removed.is_empty());
}

#[test]
fn backoff() {
    assert_eq!(backoff_seconds(30.0, 1, None, 1.0), 30.0);
    assert_eq!(backoff_seconds(30.0, 3, None, 1.0), 120.0);
    assert_eq!(backoff_seconds(30.0, 1, Some(300.0), 1.0), 300.0);
    assert_eq!(backoff_seconds(30.0, 99, None, 1.0), 86_400.0);
    assert_eq!(backoff_seconds(0.0, 2, None, 1.0), 0.0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Whatever the array, a patch changes exactly one element and keeps the count.
    #[test]
    fn patches_keep_everything_else(n in 1usize..12, target in any::<prop::sample::Index>(), extra_keys in prop::collection::vec("[a-z]{1,8}", 0..5)) {
        let items: Vec<String> = (0..n).map(|i| {
            let extras: Vec<String> = extra_keys.iter().map(|k| format!(r#""x_{k}": {i}"#)).collect();
            let sep = if extras.is_empty() { "" } else { ", " };
            format!(r#"{{"provider_url": "https://p/{i}.jpg", "upload_status": "failed", "error_details": {{"error_type": "rate_limited"}}{sep}{}}}"#, extras.join(", "))
        }).collect();
        let b = bytes(&format!("[{}]", items.join(",")));
        let arr = parse_varlena(&b).unwrap();
        let t = target.index(n);
        let (i, obj) = find_by_hash(arr, &url_hash(&format!("https://p/{t}.jpg"))).unwrap().unwrap();
        prop_assert_eq!(i, t);
        let f = Failure { error_type: "rate_limited", status_code: None, message: "m", now: "T" };
        let out = encode(&patch_failure(arr, i, obj, &f, failure_outcome(0, ErrorClass::Transient, 3)).unwrap()).unwrap();
        let o = parse_varlena(&out).unwrap();
        prop_assert_eq!(o.len(), n);
        for k in 0..n {
            let a = encode(&Node::Raw(arr.array_get(k).unwrap().unwrap())).unwrap();
            let z = encode(&Node::Raw(o.array_get(k).unwrap().unwrap())).unwrap();
            prop_assert_eq!(a == z, k != t);
        }
        // All original keys of the target survive.
        let patched = o.array_get(t).unwrap().unwrap().as_object().unwrap();
        for p in obj.pairs() {
            let (k, _) = p.unwrap();
            prop_assert!(patched.get(std::str::from_utf8(k).unwrap()).unwrap().is_some());
        }
    }
}
