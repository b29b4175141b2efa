//! One venue's `venue_images` array: typed access to the keys we rely on. Functions
//! here are strict: a key of the wrong JSON type is an
//! [`ImageError`] (SQLSTATE 22023 in SQL), never silently ignored. `null` counts as absent.

use crate::jsonb::{Container, Kind, Malformed, Number, Numeric, TooDeep, Value};

/// Bad input to a per-value function.
#[derive(Debug, Clone, PartialEq)]
pub enum ImageError {
    /// The value is not a JSON array.
    NotAnArray {
        /// What it is instead.
        found: &'static str,
    },
    /// A key holds the wrong JSON type.
    WrongType {
        /// Index of the element in the array.
        index: usize,
        /// The key.
        key: &'static str,
        /// What was expected.
        expected: &'static str,
        /// What was found.
        found: &'static str,
    },
    /// The bytes are not valid jsonb.
    Malformed(Malformed),
    /// The result cannot be stored as jsonb.
    TooLarge(&'static str),
    /// The value is nested too deeply to be copied level by level (SQLSTATE 54001).
    TooDeep(TooDeep),
}

impl std::fmt::Display for ImageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ImageError::NotAnArray { found } => {
                write!(f, "venue images must be a JSON array, got {found}")
            }
            ImageError::WrongType {
                index,
                key,
                expected,
                found,
            } => write!(
                f,
                "image {index}: \"{key}\" must be {expected} or null, got {found}"
            ),
            ImageError::Malformed(m) => write!(f, "{m}"),
            ImageError::TooLarge(m) => f.write_str(m),
            ImageError::TooDeep(t) => write!(f, "{t}"),
        }
    }
}

impl std::error::Error for ImageError {}

impl From<TooDeep> for ImageError {
    fn from(t: TooDeep) -> Self {
        ImageError::TooDeep(t)
    }
}

impl From<Malformed> for ImageError {
    fn from(m: Malformed) -> Self {
        ImageError::Malformed(m)
    }
}

/// Requires a real JSON array (a top-level scalar or an object is refused).
pub fn require_array(c: Container<'_>) -> Result<Container<'_>, ImageError> {
    match c.kind() {
        Kind::Array => Ok(c),
        Kind::Object => Err(ImageError::NotAnArray { found: "object" }),
        Kind::Scalar => Err(ImageError::NotAnArray {
            found: c.scalar()?.map(|v| v.type_name()).unwrap_or("scalar"),
        }),
    }
}

/// `upload_status` values, in dedupe rank order (the derived order: `Other` lowest).
/// Their spellings live in [`Status::as_str`] only; the other vocabularies that say
/// `uploaded`, `failed` or `permanently_failed` borrow them (see [`crate::retry`]'s
/// vocabulary).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    /// `skipped_dev`, `external`, absent, or anything else.
    Other = 0,
    /// `permanently_failed`.
    PermanentlyFailed = 1,
    /// `failed`.
    Failed = 2,
    /// `uploaded`.
    Uploaded = 3,
}

impl Status {
    /// Every value: the three stored ones, then `Other`.
    pub const ALL: [Status; 4] = [
        Status::Uploaded,
        Status::Failed,
        Status::PermanentlyFailed,
        Status::Other,
    ];

    /// The spelling: the stored `upload_status` of `Uploaded`, `Failed` and
    /// `PermanentlyFailed`; `other` names every other value (`skipped_dev`, `external`,
    /// absent) and is never written into an image.
    pub const fn as_str(self) -> &'static str {
        match self {
            Status::Uploaded => "uploaded",
            Status::Failed => "failed",
            Status::PermanentlyFailed => "permanently_failed",
            Status::Other => "other",
        }
    }

    /// The value with this spelling (`None` for any other text; [`Status::from_bytes`]
    /// reads that as `Other`).
    pub fn parse(s: &str) -> Option<Status> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// Status from the raw string bytes (`None` = absent): the value with that spelling,
    /// `Other` for anything else.
    pub fn from_bytes(b: Option<&[u8]>) -> Self {
        let Some(b) = b else { return Status::Other };
        Self::ALL
            .into_iter()
            .find(|v| v.as_str().as_bytes() == b)
            .unwrap_or(Status::Other)
    }

    /// `failed` or `permanently_failed`: what "failed" means in every count.
    pub fn is_failure(self) -> bool {
        matches!(self, Status::Failed | Status::PermanentlyFailed)
    }
}

/// Typed, strict access to one image object.
#[derive(Clone, Copy)]
pub struct Image<'a> {
    /// Position in the array.
    pub index: usize,
    /// The object.
    pub obj: Container<'a>,
}

impl<'a> Image<'a> {
    fn wrong(&self, key: &'static str, expected: &'static str, v: &Value<'_>) -> ImageError {
        ImageError::WrongType {
            index: self.index,
            key,
            expected,
            found: v.type_name(),
        }
    }

    /// A string key (`None` when absent or null).
    pub fn str_bytes(&self, key: &'static str) -> Result<Option<&'a [u8]>, ImageError> {
        match self.obj.get(key)? {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(b)) => Ok(Some(b)),
            Some(v) => Err(self.wrong(key, "a string", &v)),
        }
    }

    /// A numeric key (`None` when absent or null).
    pub fn number(&self, key: &'static str) -> Result<Option<Numeric<'a>>, ImageError> {
        match self.obj.get(key)? {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Numeric(n)) => Ok(Some(n)),
            Some(v) => Err(self.wrong(key, "a number", &v)),
        }
    }

    /// An object key (`None` when absent or null).
    pub fn object(&self, key: &'static str) -> Result<Option<Container<'a>>, ImageError> {
        match self.obj.get(key)? {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Container(c)) if c.is_object() => Ok(Some(c)),
            Some(v) => Err(self.wrong(key, "an object", &v)),
        }
    }

    /// `upload_status`.
    pub fn status(&self) -> Result<Status, ImageError> {
        Ok(Status::from_bytes(self.str_bytes("upload_status")?))
    }

    /// `error_details.error_type`.
    pub fn error_type(&self) -> Result<Option<&'a [u8]>, ImageError> {
        let Some(details) = self.object("error_details")? else {
            return Ok(None);
        };
        match details.get("error_type")? {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(b)) => Ok(Some(b)),
            Some(v) => Err(ImageError::WrongType {
                index: self.index,
                key: "error_details.error_type",
                expected: "a string",
                found: v.type_name(),
            }),
        }
    }

    /// `retry_count`, exactly as written (`None` when absent or null). A numeric string
    /// (`"2"`, as JavaScript or Elixir writers may produce) is read as its number, the
    /// way `numeric_in` reads it; any other type, or a string that is not a finite
    /// number, is an error.
    pub fn retry_number(&self) -> Result<Option<Number<'a>>, ImageError> {
        match self.obj.get("retry_count")? {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Numeric(n)) => Ok(Some(Number::Stored(n))),
            Some(Value::String(b)) => std::str::from_utf8(b)
                .ok()
                .and_then(Number::parse)
                .map(Some)
                .ok_or(ImageError::WrongType {
                    index: self.index,
                    key: "retry_count",
                    expected: "a number (or a numeric string)",
                    found: "string",
                }),
            Some(v) => Err(self.wrong("retry_count", "a number", &v)),
        }
    }

    /// `retry_count` as a whole number of attempts, the rule every decision uses:
    /// `greatest(0, floor(retry_count))`, computed exactly on the decimal value (as
    /// `floor((img->>'retry_count')::numeric)` would be) and saturated to `i64`; absent
    /// or null is 0. So `2.9999999999999999999` is 2 attempts (below a maximum of 3:
    /// still retryable), and `floor(x) >= max` holds exactly when `x >= max`.
    pub fn attempts(&self) -> Result<i64, ImageError> {
        Ok(self.retry_number()?.map_or(0, |n| n.floor_i64().max(0)))
    }
}

/// Iterates the image objects of an array (non-object elements are skipped) and counts
/// the skipped elements.
pub fn images<'a>(
    arr: Container<'a>,
) -> impl Iterator<Item = Result<Option<Image<'a>>, ImageError>> + 'a {
    arr.elements().enumerate().map(|(index, e)| {
        let v = e?;
        Ok(v.as_object().map(|obj| Image { index, obj }))
    })
}
