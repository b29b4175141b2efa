//! PostgreSQL `numeric` varlenas, as stored inside jsonb (`src/backend/utils/adt/numeric.c`).
//!
//! Digits are base 10000 (`NBASE`), each an `i16`; `weight` is the power of NBASE of the
//! first digit. The short format packs sign, display scale and weight into one `u16`.
//!
//! Numbers that decide something (which copy of an image wins, whether an image may be
//! retried) are compared and floored exactly, as PostgreSQL's `numeric` does it
//! ([`Numeric::cmp_exact`], [`Numeric::floor_i64`], [`Number`]): an `f64` has 15 to 17
//! significant digits, and `2.9999999999999999999` or `3.0000000000000000001` become `3`.
//! [`Numeric::to_f64`] is for output only.

use std::cmp::Ordering;

const NUMERIC_SIGN_MASK: u16 = 0xC000;
const NUMERIC_NEG: u16 = 0x4000;
const NUMERIC_SHORT: u16 = 0x8000;
const NUMERIC_SPECIAL: u16 = 0xC000;
const NUMERIC_SHORT_SIGN_MASK: u16 = 0x2000;
const NUMERIC_SHORT_DSCALE_MASK: u16 = 0x1F80;
const NUMERIC_SHORT_DSCALE_SHIFT: u16 = 7;
const NUMERIC_SHORT_WEIGHT_SIGN_MASK: u16 = 0x0040;
const NUMERIC_SHORT_WEIGHT_MASK: u16 = 0x003F;
const NUMERIC_DSCALE_MASK: u16 = 0x3FFF;
const NUMERIC_NAN: u16 = 0xC000;
const NUMERIC_PINF: u16 = 0xD000;
const NUMERIC_NINF: u16 = 0xF000;
const NBASE: i64 = 10_000;
const DEC_DIGITS: i64 = 4;

/// A numeric could not be decoded or encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NumericError(pub &'static str);

impl std::fmt::Display for NumericError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for NumericError {}

/// A borrowed `numeric` varlena (header included).
#[derive(Clone, Copy)]
pub struct Numeric<'a> {
    raw: &'a [u8],
    hdr: usize,
}

impl std::fmt::Debug for Numeric<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Numeric({})", self.to_decimal_string())
    }
}

/// The `numeric` zero (`0`), as `numeric_in` stores it: a short header and no digits.
const ZERO_VARLENA: [u8; 6] = {
    let h = (6u32 << 2).to_ne_bytes();
    let s = NUMERIC_SHORT.to_ne_bytes();
    [h[0], h[1], h[2], h[3], s[0], s[1]]
};

/// A finite value with its leading and trailing zero digits stripped, and its digits
/// clamped to `0..NBASE` (as [`Numeric::to_decimal_string`] prints corrupt ones); no
/// digits means zero, whatever the sign bit says.
struct Finite<'a> {
    negative: bool,
    /// Power of NBASE of the first digit (meaningless for zero).
    weight: i32,
    /// Base-NBASE digits, two native-endian bytes each.
    digits: &'a [u8],
}

impl Finite<'_> {
    fn is_zero(&self) -> bool {
        self.digits.is_empty()
    }

    fn ndigits(&self) -> usize {
        self.digits.len() / 2
    }

    /// Digit `i` (0 = the first), clamped like `to_decimal_string` does.
    #[inline]
    fn digit(&self, i: usize) -> i64 {
        digit_at(self.digits, i)
    }

    /// Compares absolute values.
    fn cmp_abs(&self, other: &Finite<'_>) -> Ordering {
        match (self.is_zero(), other.is_zero()) {
            (true, true) => return Ordering::Equal,
            (true, false) => return Ordering::Less,
            (false, true) => return Ordering::Greater,
            (false, false) => {}
        }
        // Both start with a non-zero digit: the larger weight is the larger value.
        match self.weight.cmp(&other.weight) {
            Ordering::Equal => {}
            o => return o,
        }
        // Same weight: digit by digit; with a common prefix, the one with more (non-zero,
        // as trailing zeros are stripped) digits is larger.
        let n = self.ndigits().min(other.ndigits());
        for i in 0..n {
            match self.digit(i).cmp(&other.digit(i)) {
                Ordering::Equal => {}
                o => return o,
            }
        }
        self.ndigits().cmp(&other.ndigits())
    }
}

#[inline]
fn digit_at(digits: &[u8], i: usize) -> i64 {
    let j = i * 2;
    match digits.get(j..j + 2) {
        Some(&[a, b]) => (i16::from_ne_bytes([a, b]) as i64).clamp(0, NBASE - 1),
        _ => 0,
    }
}

enum Decoded<'a> {
    NaN,
    PosInf,
    NegInf,
    Finite {
        negative: bool,
        weight: i32,
        dscale: u16,
        digits: &'a [u8],
    },
}

impl<'a> Numeric<'a> {
    /// Wraps a varlena with a 1- or 4-byte header; checks only the frame.
    pub fn from_varlena(raw: &'a [u8]) -> Result<Self, NumericError> {
        let first = *raw.first().ok_or(NumericError("empty numeric"))?;
        let (hdr, total) = if first & 0x01 == 0x01 {
            (1usize, (first >> 1) as usize)
        } else {
            let b = raw.get(0..4).ok_or(NumericError("truncated numeric"))?;
            let h = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
            if h & 0x03 != 0 {
                return Err(NumericError("compressed numeric"));
            }
            (4usize, (h >> 2) as usize)
        };
        if total < hdr + 2 || total > raw.len() {
            return Err(NumericError("numeric length out of range"));
        }
        Ok(Numeric {
            raw: &raw[..total],
            hdr,
        })
    }

    /// The whole varlena (for verbatim copies).
    pub fn raw_bytes(&self) -> &'a [u8] {
        self.raw
    }

    /// Zero, the value an absent number counts as.
    pub const ZERO: Numeric<'static> = Numeric {
        raw: &ZERO_VARLENA,
        hdr: 4,
    };

    /// The value, finite and normalised, or which special it is.
    fn finite(&self) -> Result<Finite<'a>, Special> {
        match self.decode() {
            Decoded::NaN => Err(Special::NaN),
            Decoded::PosInf => Err(Special::PosInf),
            Decoded::NegInf => Err(Special::NegInf),
            Decoded::Finite {
                negative,
                weight,
                digits,
                ..
            } => {
                let mut digits = digits;
                let mut weight = weight;
                // Leading zero digits (PostgreSQL never stores them; corrupt or foreign
                // values may) lower the weight; trailing ones change nothing.
                while digits.len() >= 2 && digit_at(digits, 0) == 0 {
                    digits = &digits[2..];
                    weight -= 1;
                }
                while digits.len() >= 2 && digit_at(digits, digits.len() / 2 - 1) == 0 {
                    digits = &digits[..digits.len() - 2];
                }
                Ok(Finite {
                    negative,
                    weight,
                    digits,
                })
            }
        }
    }

    /// Compares two numbers exactly as PostgreSQL's `numeric` does (`cmp_numerics`):
    /// by value, so `2.50`, `2.5` and `25e-1` are equal, and so are `0`, `-0` and
    /// `0.000`; `-Infinity` is below every finite value, `Infinity` above, and `NaN` above
    /// everything (equal to itself), which makes this a total order.
    ///
    /// It reads the stored base-10000 digits in place: no allocation, no text. Two
    /// identical varlenas (the common case of equal small numbers) are equal at once.
    pub fn cmp_exact(&self, other: &Numeric<'_>) -> Ordering {
        if self.raw == other.raw {
            return Ordering::Equal;
        }
        let (a, b) = match (self.finite(), other.finite()) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(x), Err(y)) => return x.rank().cmp(&y.rank()),
            // A finite value sits between -Infinity (rank 0) and Infinity (rank 2).
            (Err(x), Ok(_)) => return x.rank().cmp(&1),
            (Ok(_), Err(y)) => return 1.cmp(&y.rank()),
        };
        let sign = |f: &Finite<'_>| -> i8 {
            if f.is_zero() {
                0
            } else if f.negative {
                -1
            } else {
                1
            }
        };
        match sign(&a).cmp(&sign(&b)) {
            Ordering::Equal => {}
            o => return o,
        }
        if sign(&a) < 0 {
            b.cmp_abs(&a)
        } else {
            a.cmp_abs(&b)
        }
    }

    /// The largest integer not above the value (`floor`), saturated to the `i64` range:
    /// `Infinity` and `NaN` (which sorts above every number) give `i64::MAX`,
    /// `-Infinity` gives `i64::MIN`. Exact for any number of digits.
    pub fn floor_i64(&self) -> i64 {
        let f = match self.finite() {
            Ok(f) => f,
            Err(Special::NegInf) => return i64::MIN,
            Err(Special::PosInf | Special::NaN) => return i64::MAX,
        };
        if f.is_zero() {
            return 0;
        }
        if f.weight < 0 {
            // 0 < |value| < 1.
            return if f.negative { -1 } else { 0 };
        }
        if f.weight > 4 {
            // |value| >= 10000^5 = 10^20 > i64::MAX.
            return if f.negative { i64::MIN } else { i64::MAX };
        }
        // The integer part: digits 0..=weight (missing ones are zeros); at most 10^20,
        // which fits an i128. Any digit after them is a fraction.
        let w = f.weight as usize;
        let mut int: i128 = 0;
        for i in 0..=w {
            int = int * NBASE as i128 + f.digit(i) as i128;
        }
        let fraction = f.ndigits() > w + 1;
        let floor = if f.negative {
            -int - i128::from(fraction)
        } else {
            int
        };
        floor.clamp(i64::MIN as i128, i64::MAX as i128) as i64
    }

    fn decode(&self) -> Decoded<'a> {
        let body = &self.raw[self.hdr..];
        let h = u16::from_ne_bytes([body[0], body[1]]);
        if h & NUMERIC_SIGN_MASK == NUMERIC_SPECIAL {
            return match h {
                NUMERIC_PINF => Decoded::PosInf,
                NUMERIC_NINF => Decoded::NegInf,
                NUMERIC_NAN => Decoded::NaN,
                _ => Decoded::NaN,
            };
        }
        // The short format packs sign, scale and weight into the header word; the long
        // one has the sign and scale there and the weight in the next two bytes.
        let (negative, weight, dscale, digits) = if h & NUMERIC_SHORT != 0 {
            let mut weight = (h & NUMERIC_SHORT_WEIGHT_MASK) as i32;
            if h & NUMERIC_SHORT_WEIGHT_SIGN_MASK != 0 {
                weight |= !(NUMERIC_SHORT_WEIGHT_MASK as i32);
            }
            (
                h & NUMERIC_SHORT_SIGN_MASK != 0,
                weight,
                (h & NUMERIC_SHORT_DSCALE_MASK) >> NUMERIC_SHORT_DSCALE_SHIFT,
                &body[2..],
            )
        } else {
            if body.len() < 4 {
                return Decoded::NaN;
            }
            (
                h & NUMERIC_SIGN_MASK == NUMERIC_NEG,
                i16::from_ne_bytes([body[2], body[3]]) as i32,
                h & NUMERIC_DSCALE_MASK,
                &body[4..],
            )
        };
        Decoded::Finite {
            negative,
            weight,
            dscale,
            digits: &digits[..digits.len() & !1],
        }
    }

    /// Text as `numeric_out` prints it (`NaN`, `Infinity`, `-Infinity` for specials).
    pub fn to_decimal_string(&self) -> String {
        let (negative, weight, dscale, digits) = match self.decode() {
            Decoded::NaN => return "NaN".into(),
            Decoded::PosInf => return "Infinity".into(),
            Decoded::NegInf => return "-Infinity".into(),
            Decoded::Finite {
                negative,
                weight,
                dscale,
                digits,
            } => (negative, weight, dscale, digits),
        };
        let ndigits = digits.len() / 2;
        let digit = |i: i64| -> i64 {
            if i < 0 || i as usize >= ndigits {
                0
            } else {
                let j = i as usize * 2;
                // Clamp corrupt digits so output stays well-formed.
                (i16::from_ne_bytes([digits[j], digits[j + 1]]) as i64).clamp(0, NBASE - 1)
            }
        };
        let mut out = String::with_capacity(ndigits * 4 + dscale as usize + 3);
        if negative && ndigits > 0 {
            out.push('-');
        }
        // Integer part.
        let weight = weight as i64;
        if weight < 0 {
            out.push('0');
        } else {
            for d in 0..=weight {
                let v = digit(d);
                if d == 0 {
                    out.push_str(&v.to_string());
                } else {
                    out.push_str(&format!("{v:04}"));
                }
            }
        }
        // Fractional part: exactly dscale digits.
        if dscale > 0 {
            out.push('.');
            let mut written = 0usize;
            let mut d = weight + 1;
            while written < dscale as usize {
                let v = digit(d);
                let s = format!("{v:04}");
                for ch in s.chars() {
                    if written == dscale as usize {
                        break;
                    }
                    out.push(ch);
                    written += 1;
                }
                d += 1;
            }
        }
        out
    }

    /// The value as the nearest `f64` (specials map to NaN/±inf), for output only: never
    /// compare or floor it to decide something (use [`Numeric::cmp_exact`] and
    /// [`Numeric::floor_i64`]).
    pub fn to_f64(&self) -> f64 {
        match self.decode() {
            Decoded::NaN => f64::NAN,
            Decoded::PosInf => f64::INFINITY,
            Decoded::NegInf => f64::NEG_INFINITY,
            Decoded::Finite { .. } => self.to_decimal_string().parse().unwrap_or(f64::NAN),
        }
    }

    /// The value as an `i64` when it is an integer in range (fraction digits must be zero).
    pub fn to_i64(&self) -> Option<i64> {
        let Decoded::Finite {
            negative,
            weight,
            digits,
            ..
        } = self.decode()
        else {
            return None;
        };
        let ndigits = (digits.len() / 2) as i64;
        let weight = weight as i64;
        let mut acc: i64 = 0;
        for i in 0..ndigits {
            let j = i as usize * 2;
            let v = i16::from_ne_bytes([digits[j], digits[j + 1]]) as i64;
            if !(0..NBASE).contains(&v) {
                return None;
            }
            if i > weight {
                if v != 0 {
                    return None;
                }
                continue;
            }
            acc = acc.checked_mul(NBASE)?.checked_add(v)?;
        }
        // Digits that are implied zeros between the last stored digit and the units place.
        let mut k = ndigits.max(0);
        while k <= weight {
            acc = acc.checked_mul(NBASE)?;
            k += 1;
        }
        Some(if negative { -acc } else { acc })
    }
}

/// Which special value a numeric is.
#[derive(Clone, Copy)]
enum Special {
    NaN,
    PosInf,
    NegInf,
}

impl Special {
    /// Place among the values: -Infinity (0) < finite (1) < Infinity (2) < NaN (3).
    fn rank(self) -> u8 {
        match self {
            Special::NegInf => 0,
            Special::PosInf => 2,
            Special::NaN => 3,
        }
    }
}

/// A number that decides something, read exactly: a stored `numeric`, or a numeric
/// string (`"2"`, as some writers store `retry_count`) read as `numeric_in` reads it
/// (but `NaN` and `Infinity` are not numbers here).
#[derive(Clone)]
pub enum Number<'a> {
    /// A jsonb number, borrowed.
    Stored(Numeric<'a>),
    /// Decimal text, encoded by [`encode_decimal`] (a complete varlena, 4-byte header).
    Parsed(Vec<u8>),
}

impl std::fmt::Debug for Number<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.numeric())
    }
}

impl<'a> Number<'a> {
    /// Decimal text (surrounding whitespace allowed; JSON number syntax, plus a leading
    /// `+`, `.5` and `5.` as `numeric_in` accepts them); `None` when it is not a finite
    /// number.
    pub fn parse(text: &str) -> Option<Number<'static>> {
        encode_decimal(text.trim()).ok().map(Number::Parsed)
    }

    /// The value as a borrowed numeric.
    pub fn numeric(&self) -> Numeric<'_> {
        match self {
            Number::Stored(n) => *n,
            // `encode_decimal` writes a 4-byte header and exactly `len` bytes.
            Number::Parsed(bytes) => Numeric { raw: bytes, hdr: 4 },
        }
    }

    /// [`Numeric::cmp_exact`].
    pub fn cmp_exact(&self, other: &Number<'_>) -> Ordering {
        self.numeric().cmp_exact(&other.numeric())
    }

    /// [`Numeric::floor_i64`].
    pub fn floor_i64(&self) -> i64 {
        self.numeric().floor_i64()
    }
}

/// Encodes an integer exactly as `int8_numeric`/`numeric_in` would store it.
pub fn encode_i64(v: i64) -> Vec<u8> {
    encode_decimal(&v.to_string()).expect("an integer is a valid decimal")
}

/// Encodes decimal text (JSON number syntax, optional exponent) exactly as `numeric_in`
/// followed by `make_result` stores it: base-10000 digits with leading and trailing
/// zero digits stripped, short header when the scale and weight allow.
pub fn encode_decimal(s: &str) -> Result<Vec<u8>, NumericError> {
    let bytes = s.as_bytes();
    let mut i = 0;
    let mut negative = false;
    if i < bytes.len() && (bytes[i] == b'-' || bytes[i] == b'+') {
        negative = bytes[i] == b'-';
        i += 1;
    }
    let mut dec: Vec<u8> = Vec::with_capacity(bytes.len());
    let mut have_dp = false;
    let mut dweight: i64 = -1;
    let mut dscale: i64 = 0;
    let mut any_digit = false;
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_digit() {
            any_digit = true;
            dec.push(c - b'0');
            if have_dp {
                dscale += 1;
            } else {
                dweight += 1;
            }
        } else if c == b'.' && !have_dp {
            have_dp = true;
        } else {
            break;
        }
        i += 1;
    }
    if !any_digit {
        return Err(NumericError("not a number"));
    }
    if i < bytes.len() && (bytes[i] == b'e' || bytes[i] == b'E') {
        i += 1;
        let mut eneg = false;
        if i < bytes.len() && (bytes[i] == b'-' || bytes[i] == b'+') {
            eneg = bytes[i] == b'-';
            i += 1;
        }
        let estart = i;
        let mut exp: i64 = 0;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            exp = exp
                .checked_mul(10)
                .and_then(|e| e.checked_add((bytes[i] - b'0') as i64))
                .ok_or(NumericError("exponent out of range"))?;
            if exp > 1_000_000 {
                return Err(NumericError("exponent out of range"));
            }
            i += 1;
        }
        if i == estart {
            return Err(NumericError("bad exponent"));
        }
        if eneg {
            exp = -exp;
        }
        dweight += exp;
        dscale -= exp;
        if dscale < 0 {
            dscale = 0;
        }
    }
    if i != bytes.len() {
        return Err(NumericError("trailing characters in number"));
    }
    if dscale > NUMERIC_DSCALE_MASK as i64 {
        return Err(NumericError("scale out of range"));
    }
    // Group decimal digits into base-NBASE digits (set_var_from_str).
    let ddigits = dec.len() as i64;
    let weight = if dweight >= 0 {
        (dweight + 1 + DEC_DIGITS - 1) / DEC_DIGITS - 1
    } else {
        -((-dweight - 1) / DEC_DIGITS + 1)
    };
    let offset = (weight + 1) * DEC_DIGITS - (dweight + 1);
    let ndigits = (ddigits + offset + DEC_DIGITS - 1) / DEC_DIGITS;
    let mut digits: Vec<i16> = Vec::with_capacity(ndigits.max(0) as usize);
    let mut pos = -offset;
    for _ in 0..ndigits {
        let mut v: i64 = 0;
        for _ in 0..DEC_DIGITS {
            let d = if pos >= 0 && pos < ddigits {
                dec[pos as usize] as i64
            } else {
                0
            };
            v = v * 10 + d;
            pos += 1;
        }
        digits.push(v as i16);
    }
    // make_result: strip leading and trailing zero digits.
    let mut weight = weight;
    let mut start = 0usize;
    while start < digits.len() && digits[start] == 0 {
        start += 1;
        weight -= 1;
    }
    let mut end = digits.len();
    while end > start && digits[end - 1] == 0 {
        end -= 1;
    }
    let digits = &digits[start..end];
    if digits.is_empty() {
        weight = 0;
        negative = false;
    }
    if !(i16::MIN as i64..=i16::MAX as i64).contains(&weight) {
        return Err(NumericError("value out of range"));
    }
    let dscale = dscale as u16;
    let short = dscale <= 63 && (-64..=63).contains(&weight);
    let body_len = if short { 2 } else { 4 } + digits.len() * 2;
    let total = 4 + body_len;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&((total as u32) << 2).to_ne_bytes());
    if short {
        let mut h = NUMERIC_SHORT | (dscale << NUMERIC_SHORT_DSCALE_SHIFT);
        if negative {
            h |= NUMERIC_SHORT_SIGN_MASK;
        }
        if weight < 0 {
            h |= NUMERIC_SHORT_WEIGHT_SIGN_MASK;
        }
        h |= (weight as u16) & NUMERIC_SHORT_WEIGHT_MASK;
        out.extend_from_slice(&h.to_ne_bytes());
    } else {
        let sign = if negative { NUMERIC_NEG } else { 0 };
        out.extend_from_slice(&(sign | dscale).to_ne_bytes());
        out.extend_from_slice(&(weight as i16).to_ne_bytes());
    }
    for d in digits {
        out.extend_from_slice(&d.to_ne_bytes());
    }
    Ok(out)
}

/// Encodes NaN (`to_jsonb('NaN'::numeric)` never yields one, but the reader accepts it).
#[cfg(test)]
pub(crate) fn encode_nan() -> Vec<u8> {
    encode_special(NUMERIC_NAN)
}

/// Encodes `Infinity` (`negative = false`) or `-Infinity`, which jsonb never stores either.
#[cfg(test)]
pub(crate) fn encode_infinity(negative: bool) -> Vec<u8> {
    encode_special(if negative { NUMERIC_NINF } else { NUMERIC_PINF })
}

#[cfg(test)]
fn encode_special(header: u16) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(6u32 << 2).to_ne_bytes());
    out.extend_from_slice(&header.to_ne_bytes());
    out
}

/// A numeric in PostgreSQL's long format (`weight` as given, no stripping), for tests of
/// values `numeric_in` never stores: leading or trailing zero digits, a negative zero.
#[cfg(test)]
pub(crate) fn encode_long(negative: bool, weight: i16, digits: &[i16]) -> Vec<u8> {
    let total = 8 + digits.len() * 2;
    let mut out = Vec::new();
    out.extend_from_slice(&((total as u32) << 2).to_ne_bytes());
    let sign = if negative { NUMERIC_NEG } else { 0 };
    out.extend_from_slice(&sign.to_ne_bytes());
    out.extend_from_slice(&weight.to_ne_bytes());
    for d in digits {
        out.extend_from_slice(&d.to_ne_bytes());
    }
    out
}
