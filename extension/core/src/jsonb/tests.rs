use super::*;
use proptest::prelude::*;

/// Rewrites a packed (1-byte header) varlena with a 4-byte header, as `pg_detoast_datum`
/// would, so it can be compared with our encoder's output.
fn to_4byte_header(bytes: &[u8]) -> Vec<u8> {
    if bytes[0] & 1 == 1 {
        let total = (bytes[0] >> 1) as usize;
        let body = &bytes[1..total];
        let mut out = ((body.len() as u32 + 4) << 2).to_ne_bytes().to_vec();
        out.extend_from_slice(body);
        out
    } else {
        let h = u32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        bytes[..(h >> 2) as usize].to_vec()
    }
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn golden() -> Vec<(String, Vec<u8>, String)> {
    include_str!("../../tests/fixtures/jsonb_golden.tsv")
        .lines()
        .map(|l| {
            let mut it = l.split('\t');
            let input = it.next().unwrap().to_string();
            let bytes = unhex(it.next().unwrap());
            let text = it.next().unwrap().to_string();
            (input, bytes, text)
        })
        .collect()
}

fn encode_text(json: &str) -> Vec<u8> {
    encode(&parse_json(json).unwrap()).unwrap()
}

#[test]
fn encoder_matches_postgres_bytes() {
    for (input, pg, _) in golden() {
        let ours = encode_text(&input);
        assert_eq!(ours, to_4byte_header(&pg), "encoding of {input}");
    }
}

#[test]
fn reader_prints_like_jsonb_out() {
    for (input, pg, text) in golden() {
        let c = parse_varlena(&pg).unwrap();
        assert_eq!(to_json_text(&c).unwrap(), text, "jsonb_out of {input}");
        // The same through the 4-byte header form.
        let four = to_4byte_header(&pg);
        let c = parse_varlena(&four).unwrap();
        assert_eq!(to_json_text(&c).unwrap(), text);
    }
}

#[test]
fn raw_copy_reproduces_every_golden_value() {
    for (input, pg, _) in golden() {
        let c = parse_varlena(&pg).unwrap();
        let copy = match c.kind() {
            Kind::Scalar => Node::Raw(c.scalar().unwrap().unwrap()),
            Kind::Array => Node::Array(c.elements().map(|e| Node::Raw(e.unwrap())).collect()),
            Kind::Object => Node::Object(
                c.pairs()
                    .map(|p| {
                        let (k, v) = p.unwrap();
                        (std::borrow::Cow::Borrowed(k), Node::Raw(v))
                    })
                    .collect(),
            ),
        };
        assert_eq!(
            encode(&copy).unwrap(),
            to_4byte_header(&pg),
            "raw copy of {input}"
        );
    }
}

#[test]
fn object_get_finds_keys_and_stops_early() {
    let bytes =
        encode_text(r#"{"b": 1, "a": "x", "aa": [1], "ccc": null, "upload_status": "failed"}"#);
    let c = parse_varlena(&bytes).unwrap();
    assert_eq!(c.get("a").unwrap().unwrap().as_str(), Some("x"));
    assert!(matches!(c.get("ccc").unwrap(), Some(Value::Null)));
    assert_eq!(
        c.get("upload_status").unwrap().unwrap().as_str(),
        Some("failed")
    );
    assert!(c.get("zz").unwrap().is_none());
    assert!(c.get("").unwrap().is_none());
    assert!(c.get("a_very_long_key_absent").unwrap().is_none());
    assert_eq!(c.get("aa").unwrap().unwrap().as_array().unwrap().len(), 1);
}

#[test]
fn numeric_conversions() {
    for (text, f, i) in [
        ("0", 0.0, Some(0)),
        ("3", 3.0, Some(3)),
        ("-7", -7.0, Some(-7)),
        ("10000", 10000.0, Some(10000)),
        ("123456789", 123456789.0, Some(123456789)),
        ("2.0", 2.0, Some(2)),
        ("0.66288", 0.66288, None),
        ("-12.34", -12.34, None),
        ("1e10", 1e10, Some(10_000_000_000)),
        ("99999999999999999999", 1e20, None),
    ] {
        let b = encode_decimal(text).unwrap();
        let n = Numeric::from_varlena(&b).unwrap();
        assert_eq!(n.to_f64(), f, "{text}");
        assert_eq!(n.to_i64(), i, "{text}");
    }
    let nan = numeric::encode_nan();
    let n = Numeric::from_varlena(&nan).unwrap();
    assert!(n.to_f64().is_nan());
    assert_eq!(n.to_decimal_string(), "NaN");
    assert_eq!(n.to_i64(), None);
}

#[test]
fn malformed_inputs_are_errors_not_panics() {
    for bytes in [
        &b""[..],
        &[0x01],
        &[0x03, 0, 0, 0],
        &[0x10, 0, 0, 0, 0xff, 0xff, 0xff, 0x4f],
        &[0x0b, 0x05, 0, 0, 0x40],
    ] {
        if let Ok(c) = parse_varlena(bytes) {
            let _ = to_json_text(&c);
        }
    }
}

fn arb_json() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_string()),
        Just("true".to_string()),
        Just("false".to_string()),
        any::<i64>().prop_map(|v| v.to_string()),
        (any::<i32>(), 0u32..8).prop_map(|(m, s)| {
            let s = s as usize;
            let digits = m.unsigned_abs().to_string();
            let neg = if m < 0 { "-" } else { "" };
            if s == 0 {
                format!("{neg}{digits}")
            } else {
                let padded = format!("{:0>width$}", digits, width = s + 1);
                let (a, b) = padded.split_at(padded.len() - s);
                format!("{neg}{a}.{b}")
            }
        }),
        "[a-zA-Z0-9 _\\-é\"\\\\\n]{0,12}".prop_map(|s| {
            let mut out = String::new();
            escape_json_string(&mut out, &s);
            out
        }),
    ];
    leaf.prop_recursive(4, 64, 40, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..40).prop_map(|v| format!("[{}]", v.join(", "))),
            prop::collection::vec(("[a-z_]{0,14}", inner), 0..40).prop_map(|v| object_text(&v)),
        ]
    })
}

/// The JSON text of an object of `pairs` (keys escaped, values as JSON text).
fn object_text(pairs: &[(String, String)]) -> String {
    let body: Vec<String> = pairs
        .iter()
        .map(|(k, v)| {
            let mut key = String::new();
            escape_json_string(&mut key, k);
            format!("{key}: {v}")
        })
        .collect();
    format!("{{{}}}", body.join(", "))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// parse → encode → read → text → parse → encode is a fixed point, and agrees with
    /// serde_json on the structure.
    #[test]
    fn roundtrip(json in arb_json()) {
        let bytes = encode_text(&json);
        let c = parse_varlena(&bytes).unwrap();
        let text = to_json_text(&c).unwrap();
        let again = encode_text(&text);
        prop_assert_eq!(&bytes, &again);
        let a: serde_json::Value = serde_json::from_str(&json).unwrap();
        let b: serde_json::Value = serde_json::from_str(&text).unwrap();
        // serde_json keeps the last duplicate key too, so objects compare equal.
        prop_assert_eq!(normalize(a), normalize(b));
    }

    /// Arbitrary bytes never panic the reader.
    #[test]
    fn reader_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(c) = parse_varlena(&bytes) {
            let _ = to_json_text(&c);
            for e in c.elements().take(50) { let _ = e; }
            let _ = c.get("upload_status");
        }
        if let Ok(c) = Container::parse(&bytes) {
            let _ = to_json_text(&c);
        }
    }

    /// `get` (one forward walk) finds what a walk over the pairs (offsets computed
    /// backwards, as `getJsonbOffset` does) finds, for every key and for absent keys,
    /// in objects large enough to store offsets every 32 entries.
    #[test]
    fn get_agrees_with_pairs(
        pairs in prop::collection::vec(("[a-z_]{0,14}", arb_json()), 0..90),
        probes in prop::collection::vec("[a-z_]{0,15}", 0..10),
    ) {
        let bytes = encode_text(&object_text(&pairs));
        let c = parse_varlena(&bytes).unwrap();
        let keys = pairs.iter().map(|(k, _)| k.as_str()).chain(probes.iter().map(String::as_str));
        for key in keys {
            let by_pairs = c
                .pairs()
                .map(Result::unwrap)
                .find(|(k, _)| *k == key.as_bytes())
                .map(|(_, v)| value_to_text(&v).unwrap());
            let by_get = c.get(key).unwrap().map(|v| value_to_text(&v).unwrap());
            prop_assert_eq!(by_get, by_pairs, "key {:?}", key);
        }
    }

    /// Mutating one byte of a valid value never panics the reader.
    #[test]
    fn mutated_values_never_panic(json in arb_json(), pos in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut bytes = encode_text(&json);
        let i = pos.index(bytes.len());
        bytes[i] = byte;
        if let Ok(c) = parse_varlena(&bytes) {
            let _ = to_json_text(&c);
            let (mut a, mut b) = (KeyHint::default(), KeyHint::default());
            for e in c.elements().take(50) {
                if let Ok(Value::Container(o)) = e {
                    let _ = o.get("upload_status");
                    let _ = o.get("a");
                    let _ = o.get_hinted("upload_status", &mut a);
                    let _ = o.get_hinted("a", &mut b);
                }
            }
            let _ = c.get("upload_status");
        }
    }

    /// A hinted lookup of a mutated object never panics, whatever position the hint
    /// holds.
    #[test]
    fn hinted_lookups_of_mutated_objects_never_panic(
        pairs in prop::collection::vec(("[a-e_]{0,3}|upload_status", small_json()), 1..20),
        pos in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        at in 0u32..40,
    ) {
        let mut bytes = encode_text(&object_text(&pairs));
        let i = pos.index(bytes.len());
        bytes[i] = byte;
        if let Ok(c) = parse_varlena(&bytes) {
            let mut hint = KeyHint::at(at);
            let _ = c.get_hinted("upload_status", &mut hint);
            let _ = c.get_hinted("a", &mut hint);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// `get_hinted`, its hints carried from object to object of an array as a scan
    /// carries them, finds what `get` finds: for keys present at the hinted position or
    /// elsewhere, absent keys, objects of every size (some sharing a hint slot, some
    /// large enough to store offsets every 32 entries) and non-objects.
    #[test]
    fn get_hinted_agrees_with_get(
        objects in prop::collection::vec(
            prop::collection::vec(("[a-e_]{0,3}|upload_status|error_details", small_json()), 0..40),
            1..8,
        ),
        probes in prop::collection::vec("[a-e_]{0,4}|upload_status|provider", 1..6),
    ) {
        let elements: Vec<String> = objects
            .iter()
            .map(|pairs| object_text(pairs))
            .chain(["[1, 2]".to_string(), "\"x\"".to_string()])
            .collect();
        let bytes = encode_text(&format!("[{}]", elements.join(", ")));
        let array = parse_varlena(&bytes).unwrap();
        let mut hints = vec![KeyHint::default(); probes.len()];
        for e in array.elements() {
            let Value::Container(c) = e.unwrap() else { continue };
            for (key, hint) in probes.iter().zip(hints.iter_mut()) {
                let text = |v: Option<Value<'_>>| v.map(|v| value_to_text(&v).unwrap());
                let by_get = text(c.get(key).unwrap());
                let by_hint = text(c.get_hinted(key, hint).unwrap());
                prop_assert_eq!(by_hint, by_get, "key {:?}", key);
            }
        }
    }
}

/// Small JSON values of each kind (scalars, a string, an empty and a short container).
fn small_json() -> impl Strategy<Value = String> {
    "[1-9][0-9]{0,3}|0|\"[a-z]{0,6}\"|null|true|\\{\\}|\\[1, 2\\]|\\{\"a\": 1\\}"
}

fn normalize(v: serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Number(n) => {
            serde_json::Value::String(format!("{}", n.as_f64().unwrap_or(0.0)))
        }
        serde_json::Value::Array(a) => {
            serde_json::Value::Array(a.into_iter().map(normalize).collect())
        }
        serde_json::Value::Object(o) => {
            serde_json::Value::Object(o.into_iter().map(|(k, v)| (k, normalize(v))).collect())
        }
        other => other,
    }
}

/// Depth: every walk over values and trees uses the same machine stack at any depth (run
/// on a 256 KiB stack), and the parser refuses more than [`MAX_DEPTH`] levels.
/// Attack class: Resource exhaustion (../shared/spec/attack-classes.md).
mod depth {
    use super::*;
    use crate::jsonb::deep::{
        arrays_text, nested_arrays, nested_objects, objects_text, on_small_stack,
    };

    /// Around the limit, PostgreSQL's own reach (about 12,000 levels), and far beyond.
    const DEPTHS: [usize; 6] = [1, MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1, 12_001, 100_000];

    #[test]
    fn the_test_values_are_what_postgres_stores() {
        for d in [1, 2, 3, 40, MAX_DEPTH] {
            assert_eq!(encode_text(&arrays_text(d)), nested_arrays(d), "{d} arrays");
            assert_eq!(
                encode_text(&objects_text(d)),
                nested_objects(d),
                "{d} objects"
            );
        }
    }

    #[test]
    fn printing_any_depth_uses_a_bounded_stack() {
        on_small_stack(|| {
            for d in DEPTHS {
                for (bytes, text) in [
                    (nested_arrays(d), arrays_text(d)),
                    (nested_objects(d), objects_text(d)),
                ] {
                    let c = parse_varlena(&bytes).unwrap();
                    assert_eq!(to_json_text(&c).unwrap(), text, "depth {d}");
                    assert_eq!(value_to_text(&Value::Container(c)).unwrap(), text);
                }
            }
        });
    }

    #[test]
    fn the_parser_refuses_more_than_max_depth_levels() {
        on_small_stack(|| {
            for d in DEPTHS {
                for (text, bytes) in [
                    (arrays_text(d), nested_arrays(d)),
                    (objects_text(d), nested_objects(d)),
                ] {
                    let parsed = parse_json(&text);
                    if d <= MAX_DEPTH {
                        let node = parsed.unwrap();
                        assert_eq!(encode(&node).unwrap(), bytes, "depth {d}");
                    } else {
                        let e = parsed.unwrap_err();
                        assert_eq!(e.what, "nesting too deep", "depth {d}");
                    }
                }
            }
            // The error points at the first bracket past the limit.
            let e = parse_json(&arrays_text(MAX_DEPTH + 1)).unwrap_err();
            assert_eq!(e.at, MAX_DEPTH);
            // Empty containers count as a level too; scalars do not.
            let at_limit = "[".repeat(MAX_DEPTH - 1) + "[1, {}]" + &"]".repeat(MAX_DEPTH - 1);
            assert!(parse_json(&at_limit).is_err());
            let at_limit = "[".repeat(MAX_DEPTH - 1) + "[1, \"x\"]" + &"]".repeat(MAX_DEPTH - 1);
            assert!(parse_json(&at_limit).is_ok());
        });
    }

    #[test]
    fn trees_at_the_limit_encode_clone_print_and_drop_on_a_small_stack() {
        on_small_stack(|| {
            for text in [arrays_text(MAX_DEPTH), objects_text(MAX_DEPTH)] {
                let node = parse_json(&text).unwrap();
                let bytes = encode(&node).unwrap();
                let copy = node.clone();
                assert_eq!(encode(&copy).unwrap(), bytes);
                let printed = format!("{node:?}");
                assert!(
                    printed.starts_with("Array[Array[") || printed.starts_with("Object{\"a\": ")
                );
                // Both trees are dropped here: the compiler's drop recurses, within the
                // bound that MAX_DEPTH keeps (see `Node`).
            }
        });
    }

    #[test]
    fn the_encoder_clone_and_debug_are_iterative_beyond_the_limit() {
        on_small_stack(|| {
            let d = 100_000;
            let mut node = Node::Array(Vec::new());
            for _ in 1..d {
                node = Node::Array(vec![node]);
            }
            assert_eq!(encode(&node).unwrap(), nested_arrays(d));
            let copy = node.clone();
            assert_eq!(encode(&copy).unwrap(), nested_arrays(d));
            assert_eq!(format!("{copy:?}").len(), "Array[]".len() * d);
            // No builder makes a tree this deep from input (MAX_DEPTH); dropping one
            // recurses per level, so these two are leaked rather than dropped.
            std::mem::forget(node);
            std::mem::forget(copy);
        });
    }

    #[test]
    fn deep_values_copied_verbatim_are_not_looked_into() {
        on_small_stack(|| {
            for deep in [nested_arrays(100_000), nested_objects(12_001)] {
                let inner = parse_varlena(&deep).unwrap();
                let node = Node::Array(vec![
                    Node::Raw(Value::Container(inner)),
                    Node::Object(vec![(
                        std::borrow::Cow::Borrowed(&b"k"[..]),
                        Node::Raw(Value::Container(inner)),
                    )]),
                ]);
                let out = encode(&node).unwrap();
                let c = parse_varlena(&out).unwrap();
                let first = c.array_get(0).unwrap().unwrap().as_array();
                let first = first.or_else(|| c.array_get(0).unwrap().unwrap().as_object());
                assert_eq!(first.unwrap().raw_bytes(), inner.raw_bytes());
                let second = c.array_get(1).unwrap().unwrap().as_object().unwrap();
                let Some(Value::Container(k)) = second.get("k").unwrap() else {
                    panic!("k is a container");
                };
                assert_eq!(k.raw_bytes(), inner.raw_bytes());
            }
        });
    }
}

/// A top-level scalar read from a datum is written as its value wherever it is placed:
/// as a whole datum its bytes are kept, inside a container it is unwrapped (jsonb has no
/// scalar wrapper below the top).
#[test]
fn raw_top_level_scalars_are_unwrapped_inside_containers() {
    for text in ["5", "\"s\"", "null", "true", "-1.50"] {
        let b = encode_text(text);
        let c = parse_varlena(&b).unwrap();
        assert_eq!(
            encode(&Node::Raw(Value::Container(c))).unwrap(),
            b,
            "{text}"
        );
        let inside = Node::Array(vec![Node::Raw(Value::Container(c))]);
        assert_eq!(encode(&inside).unwrap(), encode_text(&format!("[{text}]")));
    }
}

/// Exact numeric comparison and floor (issue 17): as PostgreSQL's `numeric`, never `f64`.
mod exact_numbers {
    use super::*;
    use crate::jsonb::numeric::{encode_infinity, encode_long, encode_nan};
    use std::cmp::Ordering::{self, Equal, Greater, Less};

    fn num(text: &str) -> Vec<u8> {
        encode_decimal(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn cmp(a: &[u8], b: &[u8]) -> Ordering {
        Numeric::from_varlena(a)
            .unwrap()
            .cmp_exact(&Numeric::from_varlena(b).unwrap())
    }

    fn floor(a: &[u8]) -> i64 {
        Numeric::from_varlena(a).unwrap().floor_i64()
    }

    /// A decimal reduced to sign, significant digits (no leading or trailing zeros) and
    /// magnitude (the value is `0.digits × 10^magnitude`); `None` digits for zero.
    /// Written from the text alone, independently of the base-10000 format.
    fn reference(text: &str) -> (bool, Vec<u8>, i64) {
        let (neg, rest) = match text.strip_prefix('-') {
            Some(r) => (true, r),
            None => (false, text.strip_prefix('+').unwrap_or(text)),
        };
        let (mantissa, exp) = match rest.find(['e', 'E']) {
            Some(i) => (&rest[..i], rest[i + 1..].parse::<i64>().unwrap()),
            None => (rest, 0),
        };
        let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        let mut digits: Vec<u8> = int.bytes().chain(frac.bytes()).map(|b| b - b'0').collect();
        let mut magnitude = int.len() as i64 + exp;
        while digits.first() == Some(&0) {
            digits.remove(0);
            magnitude -= 1;
        }
        while digits.last() == Some(&0) {
            digits.pop();
        }
        if digits.is_empty() {
            return (false, digits, 0);
        }
        (neg, digits, magnitude)
    }

    fn reference_cmp(a: &str, b: &str) -> Ordering {
        let (an, ad, am) = reference(a);
        let (bn, bd, bm) = reference(b);
        let sign = |n: bool, d: &Vec<u8>| -> i8 {
            match (d.is_empty(), n) {
                (true, _) => 0,
                (false, true) => -1,
                (false, false) => 1,
            }
        };
        let (sa, sb) = (sign(an, &ad), sign(bn, &bd));
        if sa != sb || sa == 0 {
            return sa.cmp(&sb);
        }
        let abs = am.cmp(&bm).then_with(|| ad.cmp(&bd));
        if sa < 0 {
            abs.reverse()
        } else {
            abs
        }
    }

    fn reference_floor(text: &str) -> i64 {
        let (neg, digits, magnitude) = reference(text);
        if digits.is_empty() {
            return 0;
        }
        if magnitude <= 0 {
            return if neg { -1 } else { 0 };
        }
        if magnitude > 20 {
            return if neg { i64::MIN } else { i64::MAX };
        }
        let m = magnitude as usize;
        let int: i128 = (0..m).fold(0, |acc, i| acc * 10 + *digits.get(i).unwrap_or(&0) as i128);
        let fraction = digits.len() > m;
        let f = if neg { -int - fraction as i128 } else { int };
        f.clamp(i64::MIN as i128, i64::MAX as i128) as i64
    }

    #[test]
    fn the_differential_findings_of_issue_17() {
        // retry_count 2.9999999999999999999 is 2 attempts, not 3.
        assert_eq!(floor(&num("2.9999999999999999999")), 2);
        assert_eq!(
            Numeric::from_varlena(&num("2.9999999999999999999"))
                .unwrap()
                .to_f64(),
            3.0
        );
        // 3.0000000000000000001 is above 3.
        assert_eq!(cmp(&num("3.0000000000000000001"), &num("3")), Greater);
        // The longer quality score is the larger.
        assert_eq!(
            cmp(
                &num("0.12345678901234567890123"),
                &num("0.123456789012345678901234567890")
            ),
            Less
        );
    }

    #[test]
    fn comparisons_follow_numeric() {
        for (a, b, want) in [
            ("2.50", "2.5", Equal),
            ("25e-1", "2.5", Equal),
            ("0", "-0", Equal),
            ("0.000", "0e10", Equal),
            ("-0.0", "0", Equal),
            ("1e4", "10000", Equal),
            ("-1", "0", Less),
            ("-1", "-2", Greater),
            ("-1.00000000000000000001", "-1", Less),
            ("1e-300", "0", Greater),
            ("-1e-300", "0", Less),
            ("1e-300", "1e-301", Greater),
            ("9999", "10000", Less),
            ("99999999999999999999.9999", "1e20", Less),
            ("1e100000", "9e99999", Greater),
            ("-1e100000", "-9e99999", Less),
            ("123456789.000000001", "123456789.00000000099999", Greater),
        ] {
            assert_eq!(cmp(&num(a), &num(b)), want, "{a} vs {b}");
            assert_eq!(cmp(&num(b), &num(a)), want.reverse(), "{b} vs {a}");
            assert_eq!(reference_cmp(a, b), want, "reference: {a} vs {b}");
        }
    }

    #[test]
    fn specials_sort_as_numeric_sorts_them() {
        let (nan, inf, ninf) = (encode_nan(), encode_infinity(false), encode_infinity(true));
        let big = num("1e100000");
        let small = num("-1e100000");
        // -Infinity < every finite value < Infinity < NaN; NaN equals itself.
        let order = [&ninf, &small, &num("0"), &big, &inf, &nan];
        for (i, a) in order.iter().enumerate() {
            for (j, b) in order.iter().enumerate() {
                assert_eq!(cmp(a, b), i.cmp(&j), "{i} vs {j}");
            }
        }
        assert_eq!(floor(&nan), i64::MAX, "NaN sorts above everything");
        assert_eq!(floor(&inf), i64::MAX);
        assert_eq!(floor(&ninf), i64::MIN);
    }

    #[test]
    fn values_postgres_never_stores_compare_by_value() {
        let five = num("5");
        // A leading zero digit, trailing zero digits, a negative zero.
        assert_eq!(cmp(&encode_long(false, 1, &[0, 5]), &five), Equal);
        assert_eq!(cmp(&encode_long(false, 0, &[5, 0, 0]), &five), Equal);
        assert_eq!(cmp(&encode_long(true, 0, &[]), &num("0")), Equal);
        assert_eq!(cmp(&encode_long(true, 3, &[0, 0]), &num("0")), Equal);
        assert_eq!(floor(&encode_long(true, 3, &[0, 0])), 0);
        assert_eq!(floor(&encode_long(false, 1, &[0, 5, 1])), 5);
        assert_eq!(cmp(Numeric::ZERO.raw_bytes(), &num("0")), Equal);
        assert_eq!(Numeric::ZERO.raw_bytes(), &num("0")[..]);
    }

    #[test]
    fn floor_is_exact_and_saturates() {
        for (text, want) in [
            ("0", 0),
            ("3", 3),
            ("2.9999999999999999999", 2),
            ("0.5", 0),
            ("-0.5", -1),
            ("-3", -3),
            ("-3.0000000000000000001", -4),
            ("12345678.9", 12345678),
            ("100000000", 100000000),
            ("1e10", 10_000_000_000),
            ("9223372036854775807", i64::MAX),
            ("9223372036854775806.99999999999999999999", i64::MAX - 1),
            ("9223372036854775807.5", i64::MAX),
            ("9223372036854775808", i64::MAX),
            ("-9223372036854775808", i64::MIN),
            ("-9223372036854775807.5", i64::MIN),
            ("-9223372036854775808.5", i64::MIN),
            ("99999999999999999999", i64::MAX),
            ("1e300", i64::MAX),
            ("-1e300", i64::MIN),
            ("1e-300", 0),
            ("-1e-300", -1),
        ] {
            assert_eq!(floor(&num(text)), want, "{text}");
            assert_eq!(reference_floor(text), want, "reference: {text}");
        }
    }

    /// Every number of the golden corpus (bytes made by PostgreSQL) against every other.
    #[test]
    fn golden_numbers_compare_as_their_text() {
        let numbers: Vec<(String, Vec<u8>)> = golden()
            .into_iter()
            .filter_map(|(input, pg, _)| {
                let four = to_4byte_header(&pg);
                let c = parse_varlena(&four).ok()?;
                match c.scalar().ok()?? {
                    Value::Numeric(n) => Some((input, n.raw_bytes().to_vec())),
                    _ => None,
                }
            })
            .collect();
        assert!(numbers.len() >= 10, "{}", numbers.len());
        for (a, ab) in &numbers {
            assert_eq!(floor(ab), reference_floor(a), "floor {a}");
            for (b, bb) in &numbers {
                assert_eq!(cmp(ab, bb), reference_cmp(a, b), "{a} vs {b}");
            }
        }
    }

    /// Decimal text with up to 40 significant digits, leading and trailing zeros, and
    /// exponents from tiny to huge.
    fn decimal() -> impl Strategy<Value = String> {
        (
            any::<bool>(),
            "[0-9]{1,25}",
            proptest::option::of("[0-9]{1,25}"),
            prop_oneof![
                3 => Just(None),
                3 => (-40i64..40).prop_map(Some),
                1 => (-16000i64..16000).prop_map(Some),
                1 => (100_000i64..130_000).prop_map(Some),
            ],
        )
            .prop_map(|(neg, int, frac, exp)| {
                let mut s = String::new();
                if neg {
                    s.push('-');
                }
                s.push_str(&int);
                if let Some(f) = frac {
                    s.push('.');
                    s.push_str(&f);
                }
                if let Some(e) = exp {
                    s.push_str(&format!("e{e}"));
                }
                s
            })
    }

    /// A number near `text`: the same value written otherwise, or one unit of its last
    /// digit, or of a digit far beyond f64's precision, away.
    fn neighbour(text: &str, how: u8) -> String {
        match how % 5 {
            // Trailing zeros: the same value.
            0 if text.contains(['e', 'E']) => text.to_string(),
            0 if text.contains('.') => format!("{text}000"),
            0 => format!("{text}.000"),
            // Shifted point and exponent: the same value.
            1 if !text.contains(['e', 'E']) => format!("{text}0e-1"),
            // A digit appended: larger in absolute value unless it is 0.
            2 if !text.contains(['e', 'E']) => {
                if text.contains('.') {
                    format!("{text}00000000000000000001")
                } else {
                    format!("{text}.00000000000000000001")
                }
            }
            // The sign flipped.
            3 => match text.strip_prefix('-') {
                Some(t) => t.to_string(),
                None => format!("-{text}"),
            },
            _ => text.to_string(),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        #[test]
        fn cmp_exact_agrees_with_the_reference(a in decimal(), b in decimal(), how in any::<u8>()) {
            let near = neighbour(&a, how);
            for (x, y) in [(&a, &b), (&a, &near), (&near, &a)] {
                let (Ok(xb), Ok(yb)) = (encode_decimal(x), encode_decimal(y)) else {
                    // Out of numeric's range (scale above 16383): not storable.
                    continue;
                };
                prop_assert_eq!(cmp(&xb, &yb), reference_cmp(x, y), "{} vs {}", x, y);
            }
        }

        #[test]
        fn floor_agrees_with_the_reference(a in decimal()) {
            if let Ok(b) = encode_decimal(&a) {
                prop_assert_eq!(floor(&b), reference_floor(&a), "{}", a);
            }
        }

        /// Printing and reading back gives the same value (and the same bytes).
        #[test]
        fn the_decimal_text_is_the_same_number(a in decimal()) {
            if let Ok(b) = encode_decimal(&a) {
                let text = Numeric::from_varlena(&b).unwrap().to_decimal_string();
                let again = encode_decimal(&text).unwrap();
                prop_assert_eq!(cmp(&b, &again), Equal, "{} -> {}", a, text);
                prop_assert_eq!(reference_cmp(&a, &text), Equal);
            }
        }
    }
}
