//! Canonical JSON: the one byte encoding of receipts and edges.
//!
//! Objects have their keys sorted by byte order, there is no insignificant whitespace,
//! strings use serde_json's escaping and numbers must be integers (receipts keep times in
//! milliseconds so that no float formatting question ever arises). Two writers that build the
//! same value therefore produce the same bytes, and so the same reference.

use serde_json::Value;

/// Encodes `value` canonically. Fails only on a float, which the formats never contain.
pub fn to_vec(value: &Value) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(1024);
    write(value, &mut out)?;
    Ok(out)
}

/// Serializes any serde value, then encodes it canonically.
pub fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, String> {
    let v = serde_json::to_value(value).map_err(|e| e.to_string())?;
    to_vec(&v)
}

fn write(value: &Value, out: &mut Vec<u8>) -> Result<(), String> {
    match value {
        // serde_json's own encoding of scalars is already minimal and deterministic; written
        // straight into `out` (receipts of file-heavy commands hold ~10^5 strings).
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::String(s) => serde_json::to_writer(&mut *out, s).map_err(|e| e.to_string())?,
        Value::Number(n) => {
            if n.is_f64() {
                return Err(format!("canonical JSON has no floats (got {n})"));
            }
            serde_json::to_writer(&mut *out, n).map_err(|e| e.to_string())?;
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(item, out)?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, k.as_str()).map_err(|e| e.to_string())?;
                out.push(b':');
                write(&map[*k], out)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_sorted_and_whitespace_dropped_whatever_the_insertion_order() {
        let a: Value = serde_json::from_str(r#"{"b": 1, "a": {"y": [1, 2], "x": "s"}}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"a": {"x": "s", "y": [1, 2]}, "b": 1}"#).unwrap();
        assert_eq!(
            to_vec(&a).unwrap(),
            br#"{"a":{"x":"s","y":[1,2]},"b":1}"#.to_vec()
        );
        assert_eq!(to_vec(&a).unwrap(), to_vec(&b).unwrap());
    }

    #[test]
    fn floats_are_refused() {
        let v: Value = serde_json::from_str(r#"{"t": 1.5}"#).unwrap();
        assert!(to_vec(&v).is_err());
    }
}

/// The canonical JSON of securesystemslib (OLPC style), which in-toto links are signed over:
/// sorted keys, no whitespace, and strings escaped *only* for `"` and `\` (other bytes,
/// control characters included, are written raw). Integers only.
pub fn olpc(value: &Value) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    olpc_write(value, &mut out)?;
    Ok(out)
}

fn olpc_string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for b in s.bytes() {
        if b == b'"' || b == b'\\' {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.push(b'"');
}

fn olpc_write(value: &Value, out: &mut Vec<u8>) -> Result<(), String> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::String(s) => olpc_string(s, out),
        Value::Number(n) => {
            if n.is_f64() {
                return Err(format!("canonical JSON has no floats (got {n})"));
            }
            out.extend_from_slice(n.to_string().as_bytes());
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                olpc_write(item, out)?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                olpc_string(k, out);
                out.push(b':');
                olpc_write(&map[*k], out)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

#[cfg(test)]
mod olpc_tests {
    #[test]
    fn olpc_escapes_only_quote_and_backslash() {
        let v = serde_json::json!({"b": "x\n\"y\\", "a": 1});
        assert_eq!(
            super::olpc(&v).unwrap(),
            b"{\"a\":1,\"b\":\"x\n\\\"y\\\\\"}".to_vec()
        );
    }
}
