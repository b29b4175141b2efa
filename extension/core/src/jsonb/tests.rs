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
            prop::collection::vec(("[a-z_]{0,14}", inner), 0..40).prop_map(|v| {
                let body: Vec<String> = v
                    .into_iter()
                    .map(|(k, val)| {
                        let mut key = String::new();
                        escape_json_string(&mut key, &k);
                        format!("{key}: {val}")
                    })
                    .collect();
                format!("{{{}}}", body.join(", "))
            }),
        ]
    })
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
        let body: Vec<String> = pairs
            .iter()
            .map(|(k, v)| {
                let mut key = String::new();
                escape_json_string(&mut key, k);
                format!("{key}: {v}")
            })
            .collect();
        let bytes = encode_text(&format!("{{{}}}", body.join(", ")));
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
            for e in c.elements().take(50) {
                if let Ok(Value::Container(o)) = e {
                    let _ = o.get("upload_status");
                    let _ = o.get("a");
                }
            }
            let _ = c.get("upload_status");
        }
    }
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
