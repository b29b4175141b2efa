use super::*;
use crate::jsonb::{encode, parse_json, parse_varlena, to_json_text};
use proptest::prelude::*;

fn bytes(json: &str) -> Vec<u8> {
    encode(&parse_json(json).unwrap()).unwrap()
}

/// Runs dedupe and returns the result as JSON text.
fn run(json: &str) -> String {
    let b = bytes(json);
    let c = parse_varlena(&b).unwrap();
    match dedupe(c).unwrap() {
        Deduped::Unchanged => to_json_text(&c).unwrap(),
        Deduped::Rewritten(n) => {
            let out = encode(&n).unwrap();
            to_json_text(&parse_varlena(&out).unwrap()).unwrap()
        }
    }
}

fn canon(json: &str) -> String {
    let b = bytes(json);
    to_json_text(&parse_varlena(&b).unwrap()).unwrap()
}

#[test]
fn uploaded_copy_is_never_replaced_by_failed_one() {
    // Defect 2: equal quality, the failed copy is newer; the uploaded copy must win.
    let out = run(r#"[
        {"provider_url":"p1","url":"https://ik/1.jpg","upload_status":"uploaded","quality_score":0.5,"fetched_at":"2025-01-01T00:00:00Z","retry_count":1},
        {"provider_url":"p1","url":"p1","upload_status":"failed","quality_score":0.5,"fetched_at":"2025-06-01T00:00:00Z","retry_count":2}
    ]"#);
    assert_eq!(
        out,
        canon(
            r#"[{"provider_url":"p1","url":"https://ik/1.jpg","upload_status":"uploaded","quality_score":0.5,"fetched_at":"2025-01-01T00:00:00Z","retry_count":2}]"#
        )
    );
}

#[test]
fn retry_count_never_resets() {
    let out = run(r#"[
        {"provider_url":"p","upload_status":"failed","quality_score":0.9,"retry_count":3},
        {"provider_url":"p","upload_status":"failed","quality_score":0.9,"fetched_at":"2030-01-01"}
    ]"#);
    assert_eq!(
        out,
        canon(
            r#"[{"provider_url":"p","upload_status":"failed","quality_score":0.9,"fetched_at":"2030-01-01","retry_count":3}]"#
        )
    );
}

#[test]
fn rank_then_quality_then_fetched_then_first() {
    let out = run(r#"[
        {"provider_url":"a","upload_status":"permanently_failed","quality_score":1.0,"n":1},
        {"provider_url":"a","upload_status":"failed","quality_score":0.1,"n":2},
        {"provider_url":"a","upload_status":"skipped_dev","quality_score":1.0,"n":3}
    ]"#);
    assert!(out.contains(r#""n": 2"#), "{out}");
    let out = run(r#"[
        {"provider_url":"a","upload_status":"failed","quality_score":0.4,"n":1},
        {"provider_url":"a","upload_status":"failed","quality_score":0.6,"n":2}
    ]"#);
    assert!(out.contains(r#""n": 2"#), "{out}");
    let out = run(r#"[
        {"provider_url":"a","upload_status":"failed","fetched_at":"2025-01-01T00:00:00+02:00","n":1},
        {"provider_url":"a","upload_status":"failed","fetched_at":"2024-12-31T23:00:00Z","n":2}
    ]"#);
    // 2025-01-01T00:00+02:00 is 2024-12-31T22:00Z: the second is newer.
    assert!(out.contains(r#""n": 2"#), "{out}");
    let out = run(r#"[
        {"provider_url":"a","upload_status":"failed","n":1},
        {"provider_url":"a","upload_status":"failed","n":2}
    ]"#);
    assert!(out.contains(r#""n": 1"#), "{out}");
}

#[test]
fn falls_back_to_url_and_keeps_keyless_and_non_objects() {
    let out = run(r#"[
        {"url":"u1","quality_score":0.2},
        "a string",
        {"url":"u1","quality_score":0.3,"upload_status":"uploaded"},
        {"attribution":"x"},
        {"provider_url":"","url":"","k":1},
        42,
        {"provider_url":null,"url":"u2","quality_score":0.8}
    ]"#);
    assert_eq!(
        out,
        canon(
            r#"[{"url":"u2","provider_url":null,"quality_score":0.8},{"url":"u1","quality_score":0.3,"upload_status":"uploaded"},"a string",{"attribution":"x"},{"provider_url":"","url":"","k":1},42]"#
        )
    );
}

#[test]
fn provider_url_takes_precedence_over_url() {
    // A failed copy (url = provider URL) and an uploaded copy (url = ImageKit URL) of the
    // same photo share provider_url: they are one image. A legacy element with only
    // `url` (the provider URL) is the same photo too, as in the original.
    let out = run(r#"[
        {"provider_url":"g1","url":"g1","upload_status":"failed"},
        {"provider_url":"g1","url":"https://ik.imagekit.io/x.jpg","upload_status":"uploaded"},
        {"url":"g1","upload_status":"failed","retry_count":2}
    ]"#);
    assert_eq!(
        out,
        canon(
            r#"[{"provider_url":"g1","url":"https://ik.imagekit.io/x.jpg","upload_status":"uploaded","retry_count":2}]"#
        )
    );
}

#[test]
fn order_is_quality_descending_and_stable() {
    let out = run(
        r#"[{"url":"a"},{"url":"b","quality_score":0.5},{"url":"c"},{"url":"d","quality_score":0.5},{"url":"e","quality_score":0.9}]"#,
    );
    assert_eq!(
        out,
        canon(
            r#"[{"url":"e","quality_score":0.9},{"url":"b","quality_score":0.5},{"url":"d","quality_score":0.5},{"url":"a"},{"url":"c"}]"#
        )
    );
}

#[test]
fn already_clean_input_is_unchanged() {
    let b = bytes(r#"[{"url":"a","quality_score":0.9},{"url":"b","quality_score":0.5},"x"]"#);
    assert!(matches!(
        dedupe(parse_varlena(&b).unwrap()).unwrap(),
        Deduped::Unchanged
    ));
    let b = bytes("[]");
    assert!(matches!(
        dedupe(parse_varlena(&b).unwrap()).unwrap(),
        Deduped::Unchanged
    ));
}

#[test]
fn bad_input_is_refused() {
    for (json, msg) in [
        (
            r#"{"url":"a"}"#,
            "venue images must be a JSON array, got object",
        ),
        ("3", "venue images must be a JSON array, got number"),
        (
            r#"[{"url":5}]"#,
            "image 0: \"url\" must be a string or null, got number",
        ),
        (
            r#"[{"url":"a"},{"url":"a","quality_score":"high"}]"#,
            "image 1: \"quality_score\" must be a number or null, got string",
        ),
        (
            r#"[{"url":"a","retry_count":"two"}]"#,
            "image 0: \"retry_count\" must be a number (or a numeric string) or null, got string",
        ),
        (
            r#"[{"url":"a","upload_status":["uploaded"]}]"#,
            "image 0: \"upload_status\" must be a string or null, got array",
        ),
        (
            r#"[{"url":"a","fetched_at":1}]"#,
            "image 0: \"fetched_at\" must be a string or null, got number",
        ),
    ] {
        let b = bytes(json);
        let err = dedupe(parse_varlena(&b).unwrap()).err().expect(json);
        assert_eq!(err.to_string(), msg);
    }
}

#[test]
fn merge_is_dedupe_of_concatenation_and_tolerates_a_missing_side() {
    let a =
        bytes(r#"[{"provider_url":"p","upload_status":"uploaded","retry_count":1,"keep":"me"}]"#);
    let b = bytes(
        r#"[{"provider_url":"p","upload_status":"failed","retry_count":2},{"provider_url":"q"}]"#,
    );
    let (ca, cb) = (parse_varlena(&a).unwrap(), parse_varlena(&b).unwrap());
    let out = encode(&merge(Some(ca), Some(cb)).unwrap()).unwrap();
    assert_eq!(
        to_json_text(&parse_varlena(&out).unwrap()).unwrap(),
        canon(
            r#"[{"provider_url":"p","upload_status":"uploaded","retry_count":2,"keep":"me"},{"provider_url":"q"}]"#
        )
    );
    let out = encode(&merge(None, Some(cb)).unwrap()).unwrap();
    assert_eq!(parse_varlena(&out).unwrap().len(), 2);
    let out = encode(&merge(None, None).unwrap()).unwrap();
    assert_eq!(parse_varlena(&out).unwrap().len(), 0);
}

// ---- properties ----

fn arb_image() -> impl Strategy<Value = String> {
    let status = prop_oneof![
        Just(r#""uploaded""#),
        Just(r#""failed""#),
        Just(r#""permanently_failed""#),
        Just(r#""skipped_dev""#),
        Just("null"),
    ];
    (
        prop::option::of(0u8..6),
        prop::option::of(0u8..6),
        status,
        prop::option::of(0u8..10),
        prop::option::of(0u8..5),
        prop::option::of(0u32..4),
        any::<u16>(),
    )
        .prop_map(|(pu, u, st, q, f, r, tag)| {
            let mut parts = vec![
                format!(r#""upload_status": {st}"#),
                format!(r#""tag": {tag}"#),
            ];
            if let Some(pu) = pu {
                parts.push(format!(r#""provider_url": "p{pu}""#));
            }
            if let Some(u) = u {
                parts.push(format!(r#""url": "u{u}""#));
            }
            if let Some(q) = q {
                parts.push(format!(r#""quality_score": 0.{q}"#));
            }
            if let Some(f) = f {
                parts.push(format!(r#""fetched_at": "2025-01-0{}T00:00:00Z""#, f + 1));
            }
            if let Some(r) = r {
                parts.push(format!(r#""retry_count": {r}"#));
            }
            format!("{{{}}}", parts.join(", "))
        })
}

fn arb_array() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![8 => arb_image(), 1 => Just("\"loose\"".to_string()), 1 => Just("7".to_string())],
        0..25,
    )
    .prop_map(|v| format!("[{}]", v.join(", ")))
}

fn key_of(v: &serde_json::Value) -> Option<String> {
    let s = |k: &str| {
        v.get(k)
            .and_then(|x| x.as_str())
            .filter(|s| !s.is_empty())
            .map(String::from)
    };
    s("provider_url").or_else(|| s("url"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn dedupe_invariants(json in arb_array()) {
        let input: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
        let output: Vec<serde_json::Value> = serde_json::from_str(&run(&json)).unwrap();
        // One element per key; every key survives.
        let mut in_keys: Vec<String> = input.iter().filter_map(key_of).collect();
        in_keys.sort();
        in_keys.dedup();
        let mut out_keys: Vec<String> = output.iter().filter_map(key_of).collect();
        out_keys.sort();
        let n = out_keys.len();
        out_keys.dedup();
        prop_assert_eq!(n, out_keys.len());
        prop_assert_eq!(&in_keys, &out_keys);
        // Keyless elements all survive.
        prop_assert_eq!(
            input.iter().filter(|v| key_of(v).is_none()).count(),
            output.iter().filter(|v| key_of(v).is_none()).count()
        );
        for k in &in_keys {
            let group: Vec<&serde_json::Value> = input.iter().filter(|v| key_of(v).as_ref() == Some(k)).collect();
            let won = output.iter().find(|v| key_of(v).as_ref() == Some(k)).unwrap();
            // An uploaded copy is never replaced.
            if group.iter().any(|v| v["upload_status"] == "uploaded") {
                prop_assert_eq!(&won["upload_status"], "uploaded");
            }
            // retry_count is the group's maximum.
            // (absent counts as 0)
            let max = group.iter().filter_map(|v| v["retry_count"].as_u64()).max().unwrap_or(0);
            prop_assert_eq!(won["retry_count"].as_u64().unwrap_or(0), max);
            // The winner is one of the group's elements (up to retry_count).
            let strip = |v: &serde_json::Value| { let mut v = v.clone(); v.as_object_mut().unwrap().remove("retry_count"); v };
            prop_assert!(group.iter().any(|g| strip(g) == strip(won)));
        }
        // Sorted by quality descending.
        let q = |v: &serde_json::Value| v.get("quality_score").and_then(|x| x.as_f64()).unwrap_or(0.0);
        prop_assert!(output.windows(2).all(|w| q(&w[0]) >= q(&w[1])));
        // Idempotent.
        let once = run(&json);
        prop_assert_eq!(run(&once), once);
    }
}
