//! JSON text in the exact format of PostgreSQL's `jsonb_out`, for values of any depth.

use super::{Container, Elements, Kind, Malformed, Pairs, Value};

/// Appends `s` as a JSON string literal, escaped as PostgreSQL's `escape_json` does.
pub fn escape_json_string(out: &mut String, s: &str) {
    out.push('"');
    for ch in s.chars() {
        match ch {
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A container whose children are being printed.
enum Open<'a> {
    Array(Elements<'a>, bool),
    Object(Pairs<'a>, bool),
}

/// Appends `v` as `jsonb_out` prints it.
///
/// Iterative: the containers being printed are kept on a heap stack, so any depth of
/// nesting prints with the same machine stack (values are bounded only by their size).
fn write_value(out: &mut String, v: &Value<'_>) -> Result<(), Malformed> {
    let mut open: Vec<Open<'_>> = Vec::new();
    let mut next = Some(*v);
    loop {
        if let Some(v) = next.take() {
            match v {
                Value::Null => out.push_str("null"),
                Value::Bool(true) => out.push_str("true"),
                Value::Bool(false) => out.push_str("false"),
                Value::String(b) => escape_json_string(out, &String::from_utf8_lossy(b)),
                Value::Numeric(n) => out.push_str(&n.to_decimal_string()),
                Value::Container(c) => match c.kind() {
                    Kind::Scalar => {
                        next = c.scalar()?;
                        continue;
                    }
                    Kind::Array => {
                        out.push('[');
                        open.push(Open::Array(c.elements(), true));
                    }
                    Kind::Object => {
                        out.push('{');
                        open.push(Open::Object(c.pairs(), true));
                    }
                },
            }
        }
        // The next child of the innermost open container, closing finished ones.
        let Some(top) = open.last_mut() else {
            return Ok(());
        };
        match top {
            Open::Array(elements, first) => match elements.next() {
                Some(e) => {
                    if !*first {
                        out.push_str(", ");
                    }
                    *first = false;
                    next = Some(e?);
                }
                None => {
                    out.push(']');
                    open.pop();
                }
            },
            Open::Object(pairs, first) => match pairs.next() {
                Some(p) => {
                    let (k, v) = p?;
                    if !*first {
                        out.push_str(", ");
                    }
                    *first = false;
                    escape_json_string(out, &String::from_utf8_lossy(k));
                    out.push_str(": ");
                    next = Some(v);
                }
                None => {
                    out.push('}');
                    open.pop();
                }
            },
        }
    }
}

/// The container as JSON text, formatted like `jsonb_out`.
pub fn to_json_text(c: &Container<'_>) -> Result<String, Malformed> {
    let mut out = String::with_capacity(c.raw_bytes().len() * 2);
    write_value(&mut out, &Value::Container(*c))?;
    Ok(out)
}

/// A value as JSON text (used to mimic `->>` on non-string scalars).
pub fn value_to_text(v: &Value<'_>) -> Result<String, Malformed> {
    let mut out = String::new();
    match v {
        Value::String(b) => out.push_str(&String::from_utf8_lossy(b)),
        other => write_value(&mut out, other)?,
    }
    Ok(out)
}
