//! Canonical JSON: the one byte encoding of receipts and edges.
//!
//! Objects have their keys sorted by byte order, there is no insignificant whitespace,
//! strings use serde_json's escaping and numbers must be integers (receipts keep times in
//! milliseconds so that no float formatting question ever arises). Two writers that build the
//! same value therefore produce the same bytes, and so the same reference.
//!
//! One encoder (`direct`) writes both canonical forms: this one, and the OLPC form of
//! securesystemslib that in-toto links are signed over ([`olpc`]), which differs only in how
//! strings are escaped.

use serde_json::Value;

mod direct;

use direct::Escaping;

/// Encodes any serde value canonically (a [`Value`] included), straight from its
/// `Serialize` implementation, without building a value tree (a receipt of a file-heavy
/// command holds a string per access, and building a tree of them would cost an allocation
/// each). See `direct` for how object keys get sorted. Fails only on a float, which the
/// formats never contain.
pub fn encode<T: serde::Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, String> {
    encode_sized(value, 1024)
}

/// [`encode`] into a buffer that starts with room for `capacity` bytes. For a value of
/// megabytes, an estimate of its size spares the buffer's doublings, each a copy into memory
/// the process has not touched yet, which costs a page fault per page.
pub fn encode_sized<T: serde::Serialize + ?Sized>(
    value: &T,
    capacity: usize,
) -> Result<Vec<u8>, String> {
    encode_as(value, capacity, Escaping::Json)
}

/// The canonical JSON of securesystemslib (OLPC style), which in-toto links are signed over:
/// sorted keys, no whitespace, and strings escaped *only* for `"` and `\` (other bytes,
/// control characters included, are written raw). Integers only.
pub fn olpc(value: &Value) -> Result<Vec<u8>, String> {
    encode_as(value, 1024, Escaping::Olpc)
}

fn encode_as<T: serde::Serialize + ?Sized>(
    value: &T,
    capacity: usize,
    escaping: Escaping,
) -> Result<Vec<u8>, String> {
    let mut ser = direct::Canon::with_capacity(capacity, escaping);
    value.serialize(&mut ser).map_err(|e| e.to_string())?;
    Ok(ser.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value-tree form, the reference [`encode`] must match: serde_json's own encoding
    /// of a `Value`, whose objects are sorted maps (serde_json is built without
    /// `preserve_order`; the first test below fails should that change).
    fn to_vec(value: &Value) -> Result<Vec<u8>, String> {
        if has_float(value) {
            return Err("a float".into());
        }
        serde_json::to_vec(value).map_err(|e| e.to_string())
    }

    fn has_float(value: &Value) -> bool {
        match value {
            Value::Number(n) => n.is_f64(),
            Value::Array(a) => a.iter().any(has_float),
            Value::Object(m) => m.values().any(has_float),
            _ => false,
        }
    }

    #[test]
    fn keys_are_sorted_and_whitespace_dropped_whatever_the_insertion_order() {
        let a: Value = serde_json::from_str(r#"{"b": 1, "a": {"y": [1, 2], "x": "s"}}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"a": {"x": "s", "y": [1, 2]}, "b": 1}"#).unwrap();
        let sorted = br#"{"a":{"x":"s","y":[1,2]},"b":1}"#.to_vec();
        assert_eq!(encode(&a).unwrap(), sorted);
        assert_eq!(encode(&b).unwrap(), sorted);
        assert_eq!(olpc(&b).unwrap(), sorted);
        assert_eq!(to_vec(&b).unwrap(), sorted);
    }

    #[test]
    fn floats_are_refused() {
        let v: Value = serde_json::from_str(r#"{"t": 1.5}"#).unwrap();
        assert!(encode(&v).is_err());
        assert!(olpc(&v).is_err());
        assert!(encode(&[1.5f32]).is_err());
    }

    /// Fields declared out of order, renamed, skipped, optional, nested, and enums of every
    /// shape: the direct encoder must give the bytes of the value-tree path.
    #[derive(serde::Serialize)]
    struct Shapes {
        zeta: u64,
        #[serde(rename = "type")]
        kind: String,
        alpha: Option<i32>,
        #[serde(skip_serializing_if = "Option::is_none")]
        skipped: Option<String>,
        mid: Vec<Inner>,
        map: std::collections::HashMap<String, Vec<u8>>,
        int_keys: std::collections::BTreeMap<u32, bool>,
        e: Vec<E>,
        t: (i8, char, ()),
        bytes: serde_bytes_like::Bytes,
    }

    #[derive(serde::Serialize)]
    struct Inner {
        b: &'static str,
        a: i64,
    }

    #[derive(serde::Serialize)]
    enum E {
        Unit,
        New(u16),
        Tuple(u8, String),
        Struct { y: u8, x: u8 },
    }

    mod serde_bytes_like {
        pub struct Bytes(pub Vec<u8>);
        impl serde::Serialize for Bytes {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(&self.0)
            }
        }
    }

    #[test]
    fn direct_encoding_equals_the_value_tree_encoding_for_every_serde_shape() {
        let v = Shapes {
            zeta: u64::MAX,
            kind: "a \"quoted\" \\ \u{1} é".into(),
            alpha: None,
            skipped: None,
            mid: vec![
                Inner {
                    b: "x",
                    a: i64::MIN,
                },
                Inner { b: "", a: 0 },
            ],
            map: [("zz".to_string(), vec![1, 2]), ("\n".to_string(), vec![])]
                .into_iter()
                .collect(),
            int_keys: [(10, true), (9, false)].into_iter().collect(),
            e: vec![
                E::Unit,
                E::New(7),
                E::Tuple(1, "t".into()),
                E::Struct { y: 2, x: 1 },
            ],
            t: (-1, '"', ()),
            bytes: serde_bytes_like::Bytes(vec![0, 255]),
        };
        let tree = to_vec(&serde_json::to_value(&v).unwrap()).unwrap();
        assert_eq!(
            String::from_utf8(encode(&v).unwrap()).unwrap(),
            String::from_utf8(tree).unwrap()
        );
    }

    /// A repeated key (possible with `#[serde(flatten)]`) keeps its last value, as in a
    /// `serde_json::Map`.
    #[test]
    fn a_repeated_key_keeps_its_last_value_like_the_value_tree() {
        struct Dup;
        impl serde::Serialize for Dup {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeMap;
                let mut m = s.serialize_map(None)?;
                m.serialize_entry("b", &1)?;
                m.serialize_entry("a", &2)?;
                m.serialize_entry("b", &3)?;
                m.end()
            }
        }
        let tree = to_vec(&serde_json::to_value(Dup).unwrap()).unwrap();
        assert_eq!(tree, br#"{"a":2,"b":3}"#.to_vec());
        assert_eq!(encode(&Dup).unwrap(), tree);
    }

    pub(super) fn arb_value() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<String>().prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                // Short keys over a small alphabet: collisions, prefixes and escapes.
                proptest::collection::vec(("[ab\"\\\n\u{e9}]{0,3}", inner), 0..8)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        #[test]
        fn direct_encoding_equals_the_value_tree_encoding(v in arb_value()) {
            proptest::prop_assert_eq!(encode(&v).unwrap(), to_vec(&v).unwrap());
        }
    }
}

#[cfg(test)]
mod olpc_tests {
    use serde_json::Value;

    /// securesystemslib's encoder, written out: the reference the OLPC mode must match byte
    /// for byte (in-toto verifiers check signatures over these bytes).
    fn model(value: &Value, out: &mut Vec<u8>) {
        let string = |s: &str, out: &mut Vec<u8>| {
            out.push(b'"');
            for b in s.bytes() {
                if b == b'"' || b == b'\\' {
                    out.push(b'\\');
                }
                out.push(b);
            }
            out.push(b'"');
        };
        match value {
            Value::Null => out.extend_from_slice(b"null"),
            Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
            Value::String(s) => string(s, out),
            Value::Number(n) => out.extend_from_slice(n.to_string().as_bytes()),
            Value::Array(items) => {
                out.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    model(item, out);
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
                    string(k, out);
                    out.push(b':');
                    model(&map[*k], out);
                }
                out.push(b'}');
            }
        }
    }

    #[test]
    fn olpc_escapes_only_quote_and_backslash() {
        let v = serde_json::json!({"b": "x\n\"y\\", "a": 1});
        assert_eq!(
            super::olpc(&v).unwrap(),
            b"{\"a\":1,\"b\":\"x\n\\\"y\\\\\"}".to_vec()
        );
    }

    proptest::proptest! {
        #[test]
        fn olpc_mode_equals_the_securesystemslib_encoding(v in super::tests::arb_value()) {
            let mut want = Vec::new();
            model(&v, &mut want);
            proptest::prop_assert_eq!(super::olpc(&v).unwrap(), want);
        }
    }
}
