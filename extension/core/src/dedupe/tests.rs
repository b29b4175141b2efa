use super::*;
use crate::jsonb::{encode, parse_json, parse_varlena, to_json_text, value_to_text};
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

/// Dedupe turns `input` into `want` (both JSON texts).
fn dedupes_to(input: &str, want: &str) {
    assert_eq!(run(input), canon(want), "{input}");
}

#[test]
fn uploaded_copy_is_never_replaced_by_failed_one() {
    // Defect 2: equal quality, the failed copy is newer; the uploaded copy must win.
    dedupes_to(
        r#"[
        {"provider_url":"p1","url":"https://ik/1.jpg","upload_status":"uploaded","quality_score":0.5,"fetched_at":"2025-01-01T00:00:00Z","retry_count":1},
        {"provider_url":"p1","url":"p1","upload_status":"failed","quality_score":0.5,"fetched_at":"2025-06-01T00:00:00Z","retry_count":2}
    ]"#,
        r#"[{"provider_url":"p1","url":"https://ik/1.jpg","upload_status":"uploaded","quality_score":0.5,"fetched_at":"2025-01-01T00:00:00Z","retry_count":2}]"#,
    );
}

#[test]
fn retry_count_never_resets() {
    dedupes_to(
        r#"[
        {"provider_url":"p","upload_status":"failed","quality_score":0.9,"retry_count":3},
        {"provider_url":"p","upload_status":"failed","quality_score":0.9,"fetched_at":"2030-01-01"}
    ]"#,
        r#"[{"provider_url":"p","upload_status":"failed","quality_score":0.9,"fetched_at":"2030-01-01","retry_count":3}]"#,
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
    dedupes_to(
        r#"[
        {"url":"u1","quality_score":0.2},
        "a string",
        {"url":"u1","quality_score":0.3,"upload_status":"uploaded"},
        {"attribution":"x"},
        {"provider_url":"","url":"","k":1},
        42,
        {"provider_url":null,"url":"u2","quality_score":0.8}
    ]"#,
        r#"[{"url":"u2","provider_url":null,"quality_score":0.8},{"url":"u1","quality_score":0.3,"upload_status":"uploaded"},"a string",{"attribution":"x"},{"provider_url":"","url":"","k":1},42]"#,
    );
}

#[test]
fn provider_url_takes_precedence_over_url() {
    // A failed copy (url = provider URL) and an uploaded copy (url = ImageKit URL) of the
    // same photo share provider_url: they are one image. A legacy element with only
    // `url` (the provider URL) is the same photo too, as in the original.
    dedupes_to(
        r#"[
        {"provider_url":"g1","url":"g1","upload_status":"failed"},
        {"provider_url":"g1","url":"https://ik.imagekit.io/x.jpg","upload_status":"uploaded"},
        {"url":"g1","upload_status":"failed","retry_count":2}
    ]"#,
        r#"[{"provider_url":"g1","url":"https://ik.imagekit.io/x.jpg","upload_status":"uploaded","retry_count":2}]"#,
    );
}

#[test]
fn order_is_quality_descending_and_stable() {
    dedupes_to(
        r#"[{"url":"a"},{"url":"b","quality_score":0.5},{"url":"c"},{"url":"d","quality_score":0.5},{"url":"e","quality_score":0.9}]"#,
        r#"[{"url":"e","quality_score":0.9},{"url":"b","quality_score":0.5},{"url":"d","quality_score":0.5},{"url":"a"},{"url":"c"}]"#,
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

/// Depth: dedupe and merge copy elements (and the keys they do not read) byte for byte,
/// so 10,000-deep values pass through, on a 256 KiB stack.
/// Attack class: Resource exhaustion (../shared/spec/attack-classes.md).
#[test]
fn deep_elements_pass_through_dedupe_and_merge() {
    use crate::jsonb::deep::{nested_arrays, nested_objects, on_small_stack};
    on_small_stack(|| {
        let (deep, deep_obj) = (nested_arrays(10_000), nested_objects(10_000));
        let dv = Value::Container(parse_varlena(&deep).unwrap());
        let dov = Value::Container(parse_varlena(&deep_obj).unwrap());
        let with_junk = |json: &str| {
            let Node::Object(mut pairs) = parse_json(json).unwrap() else {
                panic!("an object")
            };
            pairs.push((Cow::Borrowed(&b"junk"[..]), Node::Raw(dov)));
            Node::Object(pairs)
        };
        let arr = encode(&Node::Array(vec![
            Node::Raw(dv),
            with_junk(r#"{"url":"a","retry_count":5}"#),
            with_junk(r#"{"url":"a","quality_score":1,"upload_status":"uploaded"}"#),
        ]))
        .unwrap();
        let c = parse_varlena(&arr).unwrap();
        let Deduped::Rewritten(node) = dedupe(c).unwrap() else {
            panic!("the copies of `a` are merged")
        };
        let out = encode(&node).unwrap();
        let oc = parse_varlena(&out).unwrap();
        assert_eq!(oc.len(), 2);
        let won = oc.array_get(0).unwrap().unwrap().as_object().unwrap();
        assert_eq!(
            won.get("upload_status").unwrap().unwrap().as_str(),
            Some("uploaded")
        );
        assert_eq!(
            won.get("retry_count")
                .unwrap()
                .map(|v| value_to_text(&v).unwrap()),
            Some("5".to_string())
        );
        let Some(Value::Container(junk)) = won.get("junk").unwrap() else {
            panic!("junk kept")
        };
        assert_eq!(junk.raw_bytes(), &deep_obj[4..]);
        let kept = oc.array_get(1).unwrap().unwrap().as_array().unwrap();
        assert_eq!(kept.raw_bytes(), &deep[4..]);
        // An already clean array holding only a deep element is returned as it is.
        assert!(matches!(
            dedupe(parse_varlena(&deep).unwrap()).unwrap(),
            Deduped::Unchanged
        ));
        // merge: both sides' elements (the deep array's one element is 9,999 deep), the
        // image first (quality 1), the rest verbatim in order.
        let merged = merge(Some(parse_varlena(&deep).unwrap()), Some(c)).unwrap();
        let out = encode(&merged).unwrap();
        let oc = parse_varlena(&out).unwrap();
        assert_eq!(oc.len(), 3);
        assert!(oc.array_get(0).unwrap().unwrap().as_object().is_some());
        let e = oc.array_get(1).unwrap().unwrap().as_array().unwrap();
        assert_eq!(e.raw_bytes(), &deep[4 + 8..]);
        let e = oc.array_get(2).unwrap().unwrap().as_array().unwrap();
        assert_eq!(e.raw_bytes(), &deep[4..]);
    });
}

/// Issue 17: `retry_count` and `quality_score` compare exactly, as `numeric` does.
#[test]
fn numbers_compare_exactly() {
    // An uploaded and a failed copy's retry_counts, and the one the group keeps: its
    // highest, even one f64 cannot tell from 3, as written; of equal values written
    // differently, the winner's own; a numeric string above the winner's number.
    let copy = |status: &str, retry_count: &str| {
        format!(r#"{{"provider_url":"p","upload_status":"{status}","retry_count":{retry_count}}}"#)
    };
    for (uploaded, failed, kept) in [
        ("3", "3.0000000000000000001", "3.0000000000000000001"),
        ("3.0", r#""3""#, "3.0"),
        ("2.9999999999999999999", r#"" 3 ""#, r#"" 3 ""#),
    ] {
        dedupes_to(
            &format!(
                "[{}, {}]",
                copy("uploaded", uploaded),
                copy("failed", failed)
            ),
            &format!("[{}]", copy("uploaded", kept)),
        );
    }
    // Order: the longer quality score is the larger, whatever the input order.
    dedupes_to(
        r#"[
        {"url":"a","quality_score":0.12345678901234567890123},
        {"url":"b","quality_score":0.123456789012345678901234567890}
    ]"#,
        r#"[{"url":"b","quality_score":0.123456789012345678901234567890},
                {"url":"a","quality_score":0.12345678901234567890123}]"#,
    );
    // The group's winner, by the same comparison.
    let out = run(r#"[
        {"url":"a","upload_status":"failed","quality_score":0.12345678901234567890123,"n":1},
        {"url":"a","upload_status":"failed","quality_score":0.123456789012345678901234567890,"n":2}
    ]"#);
    assert!(out.contains(r#""n": 2"#), "{out}");
    // Equal values written differently tie: input order decides, nothing moves.
    let b = bytes(
        r#"[{"url":"a","quality_score":0.50},{"url":"b","quality_score":0.5},{"url":"c","quality_score":5e-1}]"#,
    );
    assert!(matches!(
        dedupe(parse_varlena(&b).unwrap()).unwrap(),
        Deduped::Unchanged
    ));
    // Negative and absent (0) scores.
    dedupes_to(
        r#"[{"url":"a","quality_score":-1e-30},{"url":"b"},{"url":"c","quality_score":1e-30}]"#,
        r#"[{"url":"c","quality_score":1e-30},{"url":"b"},{"url":"a","quality_score":-1e-30}]"#,
    );
}

/// NaN sorts above every number, as in `numeric` (jsonb_in never stores one, but the
/// reader accepts it).
#[test]
fn a_nan_quality_sorts_first() {
    let nan = crate::jsonb::numeric_nan_for_tests();
    let arr = encode(&Node::Array(vec![
        parse_json(r#"{"url":"a","quality_score":1e100}"#).unwrap(),
        Node::Object(vec![
            (Cow::Borrowed(&b"url"[..]), Node::str("b")),
            (
                Cow::Borrowed(&b"quality_score"[..]),
                Node::Num(Cow::Owned(nan)),
            ),
        ]),
    ]))
    .unwrap();
    let Deduped::Rewritten(node) = dedupe(parse_varlena(&arr).unwrap()).unwrap() else {
        panic!("reordered")
    };
    let out = encode(&node).unwrap();
    let first = parse_varlena(&out).unwrap().array_get(0).unwrap().unwrap();
    assert_eq!(
        first
            .as_object()
            .unwrap()
            .get("url")
            .unwrap()
            .unwrap()
            .as_str(),
        Some("b")
    );
}
