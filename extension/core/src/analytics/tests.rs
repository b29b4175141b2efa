use super::*;
use crate::jsonb::{encode, parse_json};
use proptest::prelude::*;

fn bytes(json: &str) -> Vec<u8> {
    encode(&parse_json(json).unwrap()).unwrap()
}

#[test]
fn scan_counts_and_health() {
    let c = Classifier::builtin();
    let mut s = Scanner::new(&c);
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
