//! JSON text in the exact format of PostgreSQL's `jsonb_out`.

use super::{Container, Kind, Malformed, Value};

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

fn write_value(out: &mut String, v: &Value<'_>) -> Result<(), Malformed> {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::String(b) => escape_json_string(out, &String::from_utf8_lossy(b)),
        Value::Numeric(n) => out.push_str(&n.to_decimal_string()),
        Value::Container(c) => write_container(out, c)?,
    }
    Ok(())
}

fn write_container(out: &mut String, c: &Container<'_>) -> Result<(), Malformed> {
    match c.kind() {
        Kind::Scalar => {
            if let Some(v) = c.scalar()? {
                write_value(out, &v)?;
            }
        }
        Kind::Array => {
            out.push('[');
            for (i, e) in c.elements().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_value(out, &e?)?;
            }
            out.push(']');
        }
        Kind::Object => {
            out.push('{');
            for (i, p) in c.pairs().enumerate() {
                let (k, v) = p?;
                if i > 0 {
                    out.push_str(", ");
                }
                escape_json_string(out, &String::from_utf8_lossy(k));
                out.push_str(": ");
                write_value(out, &v)?;
            }
            out.push('}');
        }
    }
    Ok(())
}

/// The container as JSON text, formatted like `jsonb_out`.
pub fn to_json_text(c: &Container<'_>) -> Result<String, Malformed> {
    let mut out = String::with_capacity(c.raw_bytes().len() * 2);
    write_container(&mut out, c)?;
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
