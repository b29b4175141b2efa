use super::*;
use crate::jsonb::{encode, parse_json};
use proptest::prelude::*;

fn bytes(json: &str) -> Vec<u8> {
    encode(&parse_json(json).unwrap()).unwrap()
}

#[test]
fn scan_counts_and_health() {
    let mut s = Scanner::new(Classifier::builtin());
    let row = bytes(
        r#"[{"upload_status":"uploaded","provider":"google_places"},
            {"upload_status":"failed","provider":"google_places","error_details":{"error_type":"rate_limited"}},
            {"upload_status":"permanently_failed","provider":"here","error_details":{"error_type":"not_found"}},
            {"upload_status":"failed","provider":5,"error_details":{"error_type":"odd"}},
            {"upload_status":"failed","error_details":"not an object"},
            "loose", 3]"#,
    );
    let r = s.scan(Some(&row), true);
    assert_eq!(
        r,
        RowScan {
            total: 5,
            failed: 4,
            uploaded: 1,
            transient: true,
            permanent: true,
            ambiguous: true
        }
    );
    assert_eq!(r.rate_tenths(), 800);
    s.scan(None, true);
    s.scan(Some(&bytes(r#"{"upload_status":"failed"}"#)), true);
    s.scan(Some(&bytes(r#""text""#)), true);
    s.scan(Some(&[0x0b, 1, 2, 3, 4]), true);
    assert_eq!(
        s.health,
        Health {
            rows: 5,
            null_values: 1,
            non_array_values: 2,
            non_object_elements: 2,
            malformed_values: 1
        }
    );
    let rows = s.breakdown_rows();
    let flat: Vec<(Option<&str>, Option<&str>, &str, i64)> = rows
        .iter()
        .map(|r| {
            (
                r.provider.as_deref(),
                r.error_type.as_deref(),
                r.error_class.as_str(),
                r.count,
            )
        })
        .collect();
    assert_eq!(
        flat,
        vec![
            (Some("5"), Some("odd"), "ambiguous", 1),
            (Some("google_places"), Some("rate_limited"), "transient", 1),
            (Some("here"), Some("not_found"), "permanent", 1),
            (None, None, "unknown", 1),
        ]
    );
    assert_eq!(
        failed_error_types(&row),
        vec![
            Some("rate_limited".into()),
            Some("not_found".into()),
            Some("odd".into()),
            None
        ]
    );
}

fn row(id: i64, failed: i64, total: i64, transient: bool) -> VenueRow {
    let r = RowScan {
        total,
        failed,
        uploaded: total - failed,
        transient,
        permanent: false,
        ambiguous: false,
    };
    VenueRow::new(Some(id), Some(b"v"), None, &r)
}

#[test]
fn priority_is_exact() {
    let v = row(1, 3, 10, true);
    assert_eq!(v.failure_rate_pct(), 30.0);
    assert_eq!(v.priority_score(), 80.0);
    let v = row(1, 1, 3, false);
    assert_eq!(v.priority_score(), 43.3);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    /// The bounded heap returns exactly the head of a full sort.
    #[test]
    fn topk_equals_sorted_prefix(rows in prop::collection::vec((0i64..50, 0i64..6, 1i64..8, any::<bool>()), 0..200), k in 0usize..30, by_priority in any::<bool>()) {
        let order = if by_priority { VenueOrder::ByPriority } else { VenueOrder::ByFailures };
        let all: Vec<VenueRow> = rows.iter().enumerate().map(|(i, &(_, f, t, tr))| row(i as i64, f.min(t), t, tr)).collect();
        let mut top = TopK::new(k, order);
        for r in all.clone() { top.push(r); }
        let mut sorted = all;
        sort_venues(&mut sorted, order);
        sorted.truncate(k);
        prop_assert_eq!(top.into_sorted(), sorted);
    }
}

fn arb_row() -> impl Strategy<Value = Option<String>> {
    let img =
        (0u8..4, prop::option::of(0u8..3), prop::option::of(0u8..12)).prop_map(|(st, p, e)| {
            let status = ["uploaded", "failed", "permanently_failed", "skipped_dev"][st as usize];
            let mut parts = vec![format!(r#""upload_status":"{status}""#)];
            if let Some(p) = p {
                parts.push(format!(r#""provider":"p{p}""#));
            }
            if let Some(e) = e {
                let et = crate::classify::BUILTIN_TRANSIENT
                    .iter()
                    .chain(crate::classify::BUILTIN_PERMANENT)
                    .nth(e as usize)
                    .copied()
                    .unwrap_or("odd");
                parts.push(format!(r#""error_details":{{"error_type":"{et}"}}"#));
            }
            format!("{{{}}}", parts.join(","))
        });
    prop_oneof![
        8 => prop::collection::vec(prop_oneof![9 => img, 1 => Just("3".to_string())], 0..8)
            .prop_map(|v| Some(format!("[{}]", v.join(",")))),
        1 => Just(None),
        1 => Just(Some(r#"{"not":"array"}"#.to_string())),
    ]
}

fn stats_of(rows: &[Option<Vec<u8>>]) -> Stats {
    let mut st = Stats::new(Classifier::builtin());
    for r in rows {
        st.add(r.as_deref());
    }
    st
}

/// A list of `rows`: venue `id` is named `v<id>` (NULL for 4) and has city `id % 3` (NULL
/// for 2), its id NULL when it is 5.
fn list_of(spec: ListSpec, rows: &[(i64, Option<Vec<u8>>)]) -> VenueList {
    let mut l = VenueList::new(spec, Classifier::builtin());
    for (id, r) in rows {
        let name = format!("v{id}");
        l.add(
            Some(*id).filter(|&i| i != 5),
            Some(name.as_bytes()).filter(|_| *id != 4),
            Some(id % 3).filter(|&c| c != 2),
            r.as_deref(),
        );
    }
    l
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Splitting rows across "workers", serialising and merging gives the same state.
    #[test]
    fn stats_merge_equals_single_pass(rows in prop::collection::vec(arb_row(), 0..60), cut in any::<prop::sample::Index>()) {
        let rows: Vec<Option<Vec<u8>>> = rows.iter().map(|r| r.as_ref().map(|j| bytes(j))).collect();
        let whole = stats_of(&rows);
        let k = cut.index(rows.len() + 1);
        let (a, b) = rows.split_at(k);
        let mut left = Stats::decode(&stats_of(a).encode(), Classifier::builtin()).unwrap();
        let right = Stats::decode(&stats_of(b).encode(), Classifier::builtin()).unwrap();
        left.merge(&right);
        prop_assert_eq!(left.summary.clone(), whole.summary.clone());
        prop_assert_eq!(left.scanner.health, whole.scanner.health);
        prop_assert_eq!(left.scanner.breakdown_rows(), whole.scanner.breakdown_rows());
    }

    #[test]
    fn list_merge_equals_single_pass(rows in prop::collection::vec(arb_row(), 0..60), cut in any::<prop::sample::Index>(), k in prop::option::of(0usize..10), prio in any::<bool>(), up in any::<bool>()) {
        let spec = ListSpec { min_failures: 1, require_uploaded: up, max_rows: k, order: if prio { VenueOrder::ByPriority } else { VenueOrder::ByFailures }, with_error_types: true };
        let rows: Vec<(i64, Option<Vec<u8>>)> = rows.iter().enumerate().map(|(i, r)| (i as i64, r.as_ref().map(|j| bytes(j)))).collect();
        let whole = list_of(spec, &rows).into_sorted();
        let cut = cut.index(rows.len() + 1);
        let (a, b) = rows.split_at(cut);
        let mut left = VenueList::decode(&list_of(spec, a).encode(), Classifier::builtin()).unwrap();
        let right = VenueList::decode(&list_of(spec, b).encode(), Classifier::builtin()).unwrap();
        left.merge(right);
        prop_assert_eq!(left.into_sorted(), whole);
    }

    /// A compact list (unbounded, without error types) keeps, orders, sends and merges
    /// what a list of owned rows does, and writes the same bytes.
    #[test]
    fn compact_list_equals_owned_rows(rows in prop::collection::vec(arb_row(), 0..60), cut in any::<prop::sample::Index>(), prio in any::<bool>(), up in any::<bool>()) {
        let order = if prio { VenueOrder::ByPriority } else { VenueOrder::ByFailures };
        let spec = ListSpec { min_failures: 1, require_uploaded: up, max_rows: None, order, with_error_types: false };
        let owned = ListSpec { with_error_types: true, ..spec };
        // Ids repeat (every third row), so that the order's last key decides too, and
        // some are NULL.
        let rows: Vec<(i64, Option<Vec<u8>>)> = rows.iter().enumerate().map(|(i, r)| (i as i64 / 3, r.as_ref().map(|j| bytes(j)))).collect();
        let mut expected = list_of(owned, &rows).into_sorted();
        for r in &mut expected {
            r.error_types.clear();
        }
        let mut whole = list_of(spec, &rows);
        let mut w = Writer::default();
        whole.write_sorted(&mut w);
        let mut r = Reader::new(&w.buf);
        prop_assert_eq!(decode_rows(&mut r).unwrap(), expected.clone());
        let cut = cut.index(rows.len() + 1);
        let (a, b) = rows.split_at(cut);
        let mut left = VenueList::decode(&list_of(spec, a).encode(), Classifier::builtin()).unwrap();
        let right = VenueList::decode(&list_of(spec, b).encode(), Classifier::builtin()).unwrap();
        left.merge(right);
        let merged = left.into_rows();
        prop_assert!(matches!(merged, VenueRows::Compact(_)));
        prop_assert_eq!(merged.into_vec(), expected);
    }

    #[test]
    fn state_decoders_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = Stats::decode(&bytes, Classifier::builtin());
        let _ = VenueList::decode(&bytes, Classifier::builtin());
    }
}

/// Depth: the scans print a non-string `provider` or `error_type` as `->>` does, at any
/// depth (PostgreSQL prints them too), on a 256 KiB stack.
/// Attack class: Resource exhaustion (../shared/spec/attack-classes.md).
#[test]
fn deep_keys_are_printed_like_the_arrow_operator() {
    use crate::jsonb::deep::{arrays_text, nested_arrays, on_small_stack};
    use crate::jsonb::{parse_varlena, Node, Value};
    use std::borrow::Cow;
    on_small_stack(|| {
        let d = 12_001;
        let deep = nested_arrays(d);
        let dv = Value::Container(parse_varlena(&deep).unwrap());
        let row = encode(&Node::Array(vec![
            Node::Raw(dv),
            Node::Object(vec![
                (Cow::Borrowed(&b"upload_status"[..]), Node::str("failed")),
                (Cow::Borrowed(&b"provider"[..]), Node::Raw(dv)),
                (
                    Cow::Borrowed(&b"error_details"[..]),
                    Node::Object(vec![(Cow::Borrowed(&b"error_type"[..]), Node::Raw(dv))]),
                ),
            ]),
        ]))
        .unwrap();
        let mut s = Stats::new(Classifier::builtin());
        s.add(Some(&row));
        let rows = s.scanner.breakdown_rows();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].provider.as_deref(), Some(arrays_text(d).as_str()));
        assert_eq!(rows[0].error_type.as_deref(), Some(arrays_text(d).as_str()));
        assert_eq!(rows[0].count, 1);
        assert_eq!(s.scanner.health.non_object_elements, 1);
    });
}
