//! The per-array summary: what `venue_images_summary` counts in one venue's array.
//! Strict about types, like [`crate::image`]; its `retryable` count is the queue's own
//! rule ([`crate::retry::State::Queued`]).

use crate::classify::{Classifier, ErrorClass};
use crate::image::{images, require_array, ImageError, Status};
use crate::jsonb::Container;

/// What `venue_images_summary` returns.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Image objects (non-object elements are not images).
    pub total: i64,
    /// `uploaded`.
    pub uploaded: i64,
    /// `failed` only.
    pub failed: i64,
    /// `permanently_failed` only.
    pub permanently_failed: i64,
    /// Failed or permanently failed images with a transient error type.
    pub transient: i64,
    /// ... with a permanent error type.
    pub permanent: i64,
    /// ... with an ambiguous error type.
    pub ambiguous: i64,
    /// `failed`, transient, `retry_count` below the maximum, and a `provider_url` or
    /// `url` to download from: what the queue retries (`crate::retry::State::Queued`).
    pub retryable: i64,
}

/// Counts one array; strict about types.
pub fn summarize(
    arr: Container<'_>,
    classifier: &Classifier,
    max_retries: i64,
) -> Result<Summary, ImageError> {
    let arr = require_array(arr)?;
    let mut s = Summary::default();
    for img in images(arr) {
        let Some(img) = img? else { continue };
        s.total += 1;
        let status = img.status()?;
        match status {
            Status::Uploaded => s.uploaded += 1,
            Status::Failed => s.failed += 1,
            Status::PermanentlyFailed => s.permanently_failed += 1,
            Status::Other => {}
        }
        if !status.is_failure() {
            continue;
        }
        let class = classifier.classify_bytes(img.error_type()?);
        match class {
            ErrorClass::Transient => s.transient += 1,
            ErrorClass::Permanent => s.permanent += 1,
            ErrorClass::Ambiguous => s.ambiguous += 1,
            ErrorClass::Unknown => {}
        }
        if status == Status::Failed {
            img.retry_number()?;
            // The queue's own rule (a source URL is needed too): see `crate::retry`.
            let queued = crate::retry::read_element(img.index, img.obj).is_ok_and(|e| {
                crate::retry::state_of(classifier, max_retries, &e) == crate::retry::State::Queued
            });
            if queued {
                s.retryable += 1;
            }
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::Image;
    use crate::jsonb::{encode, parse_json, parse_varlena};

    fn bytes(json: &str) -> Vec<u8> {
        encode(&parse_json(json).unwrap()).unwrap()
    }

    #[test]
    fn summary_counts() {
        let b = bytes(
            r#"[
            {"upload_status":"uploaded"},
            {"upload_status":"failed","error_details":{"error_type":"rate_limited"},"retry_count":1,"provider_url":"https://p/1"},

            {"upload_status":"failed","error_details":{"error_type":"rate_limited"},"retry_count":3},
            {"upload_status":"failed","error_details":{"error_type":"not_found"}},
            {"upload_status":"permanently_failed","error_details":{"error_type":"weird"}},
            {"upload_status":"failed"},
            {"upload_status":"skipped_dev"},
            {},
            "not an image", 7, null
        ]"#,
        );
        let s = summarize(parse_varlena(&b).unwrap(), &Classifier::builtin(), 3).unwrap();
        assert_eq!(
            s,
            Summary {
                total: 8,
                uploaded: 1,
                failed: 4,
                permanently_failed: 1,
                transient: 2,
                permanent: 1,
                ambiguous: 1,
                retryable: 1
            }
        );
    }

    /// Issue 17: `retry_count` is floored exactly, as
    /// `greatest(0, floor((img->>'retry_count')::numeric))` is in SQL.
    #[test]
    fn retry_count_is_floored_exactly() {
        let retryable = |rc: &str| {
            let b = bytes(&format!(
                r#"[{{"upload_status":"failed","error_details":{{"error_type":"rate_limited"}},
                     "provider_url":"https://p/1","retry_count":{rc}}}]"#
            ));
            let c = parse_varlena(&b).unwrap();
            let s = summarize(c, &Classifier::builtin(), 3).unwrap();
            let obj = c.array_get(0).unwrap().unwrap().as_object().unwrap();
            let attempts = Image { index: 0, obj }.attempts().unwrap();
            (s.retryable, attempts)
        };
        for (rc, want) in [
            ("2.9999999999999999999", (1, 2)),
            ("\"2.9999999999999999999\"", (1, 2)),
            (" \" 2.9999999999999999999 \"", (1, 2)),
            ("2", (1, 2)),
            ("3", (0, 3)),
            ("3.0000000000000000001", (0, 3)),
            ("\"3\"", (0, 3)),
            ("-5", (1, 0)),
            ("-0.5", (1, 0)),
            ("null", (1, 0)),
            ("1e300", (0, i64::MAX)),
            ("\"1e300\"", (0, i64::MAX)),
            ("1e-300", (1, 0)),
        ] {
            assert_eq!(retryable(rc), want, "retry_count {rc}");
        }
        // A string that is not a finite number is refused, as before.
        for rc in ["\"NaN\"", "\"Infinity\"", "\"abc\"", "\"\"", "\"1e\""] {
            let b = bytes(&format!(
                r#"[{{"upload_status":"failed","retry_count":{rc}}}]"#
            ));
            let e = summarize(parse_varlena(&b).unwrap(), &Classifier::builtin(), 3).unwrap_err();
            assert!(e.to_string().contains("retry_count"), "{rc}: {e}");
        }
    }

    #[test]
    fn wrong_types_are_named() {
        let b = bytes(r#"[{"upload_status":"uploaded"},{"upload_status":5}]"#);
        let e = summarize(parse_varlena(&b).unwrap(), &Classifier::builtin(), 3).unwrap_err();
        assert_eq!(
            e.to_string(),
            "image 1: \"upload_status\" must be a string or null, got number"
        );
        let b = bytes(r#"[{"upload_status":"failed","error_details":"oops"}]"#);
        let e = summarize(parse_varlena(&b).unwrap(), &Classifier::builtin(), 3).unwrap_err();
        assert_eq!(
            e.to_string(),
            "image 0: \"error_details\" must be an object or null, got string"
        );
        let b = bytes(r#"{"a":1}"#);
        let e = summarize(parse_varlena(&b).unwrap(), &Classifier::builtin(), 3).unwrap_err();
        assert_eq!(
            e.to_string(),
            "venue images must be a JSON array, got object"
        );
        let b = bytes(r#""text""#);
        let e = summarize(parse_varlena(&b).unwrap(), &Classifier::builtin(), 3).unwrap_err();
        assert_eq!(
            e.to_string(),
            "venue images must be a JSON array, got string"
        );
    }
}
