//! Quality score, priority score and failure rate (`original.md`, "Formulas").

/// A score input outside its domain.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct BadScoreInput(pub String);

/// Rounds half away from zero to `digits` decimals (like Elixir's `Float.round` and
/// SQL `round(numeric)` on the values we produce).
pub fn round_to(x: f64, digits: i32) -> f64 {
    let m = 10f64.powi(digits);
    let r = (x * m).round() / m;
    if r == 0.0 {
        0.0
    } else {
        r
    }
}

/// Quality of an image from its pixel size: resolution (up to 4 MP) weighs 0.7, aspect
/// ratio adds 0.2–0.3. Missing or non-positive dimensions score 0.1.
pub fn quality_score(width: Option<i64>, height: Option<i64>) -> f64 {
    let (w, h) = match (width, height) {
        (Some(w), Some(h)) if w > 0 && h > 0 => (w as f64, h as f64),
        _ => return 0.1,
    };
    let resolution = (w * h / 4_000_000.0).min(1.0) * 0.7;
    let ratio = w / h;
    let aspect = if (1.3..=1.8).contains(&ratio) {
        0.3
    } else if (1.0..1.3).contains(&ratio) || (ratio > 1.8 && ratio <= 2.4) {
        0.25
    } else {
        0.2
    };
    // Keep the documented examples exact (0.66288, not 0.6628799999999999).
    round_to(resolution + aspect, 9)
}

/// Failure rate in tenths of a percent, rounded half up exactly as SQL
/// `round(100.0 * failed / total, 1)` does (integer arithmetic, no float error).
pub fn failure_rate_tenths(failed: i64, total: i64) -> i64 {
    if total <= 0 || failed <= 0 {
        return 0;
    }
    let (f, t) = (failed as i128, total as i128);
    ((2000 * f + t) / (2 * t)) as i64
}

/// Failure rate in percent with one decimal; 0 when there are no images.
pub fn failure_rate_pct(failed: i64, total: i64) -> f64 {
    failure_rate_tenths(failed, total) as f64 / 10.0
}

/// Mean of rates given in tenths, rounded half up to one decimal (exact).
pub fn mean_rate_pct(sum_tenths: i64, n: i64) -> f64 {
    if n <= 0 {
        return 0.0;
    }
    let (s, n) = (sum_tenths as i128, n as i128);
    ((2 * s + n) / (2 * n)) as f64 / 10.0
}

/// Remediation priority: `failed*10 + rate + 20 if any failure is transient`, 1 decimal.
pub fn priority_score(
    failed_count: i64,
    failure_rate_pct: f64,
    has_transient: bool,
) -> Result<f64, BadScoreInput> {
    if failed_count < 0 {
        return Err(BadScoreInput(format!(
            "failed_count must not be negative, got {failed_count}"
        )));
    }
    if !failure_rate_pct.is_finite() || !(0.0..=100.0).contains(&failure_rate_pct) {
        return Err(BadScoreInput(format!(
            "failure_rate_pct must be between 0 and 100, got {failure_rate_pct}"
        )));
    }
    let bonus = if has_transient { 20.0 } else { 0.0 };
    Ok(round_to(
        failed_count as f64 * 10.0 + failure_rate_pct + bonus,
        1,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_quality_examples() {
        assert_eq!(quality_score(Some(4032), Some(3024)), 1.0);
        assert_eq!(quality_score(Some(2000), Some(2000)), 0.95);
        assert_eq!(quality_score(Some(1920), Some(1080)), 0.66288);
        assert_eq!(quality_score(Some(800), Some(800)), 0.362);
        assert_eq!(quality_score(Some(1000), Some(400)), 0.27);
        assert_eq!(quality_score(None, Some(400)), 0.1);
        assert_eq!(quality_score(Some(0), Some(400)), 0.1);
        assert_eq!(quality_score(Some(-5), Some(-5)), 0.1);
        // Portrait and extreme panoramas get the lowest aspect bonus.
        assert_eq!(
            quality_score(Some(1080), Some(1920)),
            round_to(0.36288 + 0.2, 9)
        );
        assert!(quality_score(Some(i32::MAX as i64), Some(i32::MAX as i64)) <= 1.0);
    }

    #[test]
    fn aspect_boundaries() {
        // (width, size part, aspect bonus): 1.3 and 1.8 are inside the best band; 2.4
        // inside the second.
        for (width, size, aspect) in [
            (1300, 0.2275, 0.3),
            (1800, 0.315, 0.3),
            (2400, 0.42, 0.25),
            (1000, 0.175, 0.25),
            (999, 0.174825, 0.2),
        ] {
            assert_eq!(
                quality_score(Some(width), Some(1000)),
                round_to(size + aspect, 9),
                "{width}x1000"
            );
        }
    }

    #[test]
    fn priority_examples() {
        assert_eq!(priority_score(3, 30.0, true), Ok(80.0));
        assert_eq!(priority_score(3, 30.0, false), Ok(60.0));
        assert_eq!(priority_score(1, 33.3, false), Ok(43.3));
        assert!(priority_score(-1, 10.0, true).is_err());
        assert!(priority_score(1, f64::NAN, true).is_err());
        assert!(priority_score(1, 100.5, true).is_err());
    }

    #[test]
    fn rates() {
        assert_eq!(failure_rate_pct(1, 3), 33.3);
        assert_eq!(failure_rate_pct(2, 3), 66.7);
        assert_eq!(failure_rate_pct(0, 0), 0.0);
        assert_eq!(failure_rate_pct(3, 3), 100.0);
        assert_eq!(failure_rate_pct(3, 2000), 0.2); // 0.15 rounds half up
        assert_eq!(failure_rate_pct(1, 16), 6.3); // 6.25
        assert_eq!(mean_rate_pct(125 + 250, 2), 18.8); // 18.75
        assert_eq!(mean_rate_pct(0, 0), 0.0);
    }
}
