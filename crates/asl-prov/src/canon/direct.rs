//! A serde `Serializer` that writes canonical JSON directly into a byte vector.
//!
//! Contract: for every value, the bytes are exactly those of `serde_json::to_vec` applied to
//! `serde_json::to_value(value)` (whose maps are sorted) — keys sorted by byte order (a
//! repeated key keeps its last value, as `serde_json::Map::insert` does), serde_json's string
//! escaping and integer formatting, no whitespace — except that every float is refused
//! (to_value turns a NaN into `null`; the formats have no floats at all). With
//! [`Escaping::Olpc`] only the escaping of strings differs.
//!
//! How keys get sorted without a value tree: each member of an object is written in the order
//! serde hands it over, and its key and byte range are pushed on one stack shared by all
//! objects. When the object ends and its keys were already ascending (maps from a `BTreeMap`,
//! and structs whose fields are declared in order) nothing more happens; otherwise the
//! object's bytes are rearranged once. A struct key is a `&'static str`, so the common case
//! allocates nothing per object.

use std::fmt::Display;

use serde::ser::{self, Serialize};

#[derive(Debug)]
pub struct Error(String);

impl Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl ser::Error for Error {
    fn custom<T: Display>(msg: T) -> Self {
        Error(msg.to_string())
    }
}

enum Key {
    Static(&'static str),
    Owned(String),
}

impl Key {
    fn as_str(&self) -> &str {
        match self {
            Key::Static(s) => s,
            Key::Owned(s) => s,
        }
    }
}

/// One member of an open object: its key and where `"key":value` sits in the output.
struct Member {
    key: Key,
    start: usize,
    end: usize,
}

/// How strings (values and keys) are escaped: the one thing in which the two canonical forms
/// differ.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Escaping {
    /// serde_json's: `"`, `\` and the control characters. Receipts, edges, signatures.
    #[default]
    Json,
    /// securesystemslib's (OLPC canonical JSON, which in-toto links are signed over): only
    /// `"` and `\`; every other byte, control characters included, is written raw.
    Olpc,
}

#[derive(Default)]
pub struct Canon {
    out: Vec<u8>,
    /// Members of every object still open, innermost last.
    members: Vec<Member>,
    escaping: Escaping,
}

impl Canon {
    /// A writer whose output starts with room for `capacity` bytes.
    pub fn with_capacity(capacity: usize, escaping: Escaping) -> Canon {
        Canon {
            out: Vec::with_capacity(capacity),
            members: Vec::new(),
            escaping,
        }
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.out
    }

    fn string(&mut self, s: &str) {
        if self.escaping == Escaping::Olpc {
            self.out.push(b'"');
            for b in s.bytes() {
                if b == b'"' || b == b'\\' {
                    self.out.push(b'\\');
                }
                self.out.push(b);
            }
            self.out.push(b'"');
            return;
        }
        // serde_json's escaping is the canonical one, and it escapes exactly the control
        // characters, '"' and '\\'. Most strings (paths, references) hold none of them and
        // are copied as they are.
        // A fold without early exit, so that the check runs on whole vectors of bytes.
        let plain = !s.bytes().fold(false, |bad, b| {
            bad | (b < 0x20) | (b == b'"') | (b == b'\\')
        });
        if plain {
            self.out.reserve(s.len() + 2);
            self.out.push(b'"');
            self.out.extend_from_slice(s.as_bytes());
            self.out.push(b'"');
        } else {
            // Writing into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut self.out, s);
        }
    }

    fn integer(&mut self, v: impl Serialize) {
        // serde_json's integer formatting (itoa), as `to_value` then `to_vec` would give.
        let _ = serde_json::to_writer(&mut self.out, &v);
    }

    fn open_object(&mut self) -> Object<'_> {
        self.out.push(b'{');
        let base = self.members.len();
        let content = self.out.len();
        Object {
            ser: self,
            base,
            content,
            pending: None,
            variant: false,
        }
    }
}

type Res = Result<(), Error>;

fn no_float() -> Error {
    Error("canonical JSON has no floats".into())
}

impl<'a> ser::Serializer for &'a mut Canon {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Array<'a>;
    type SerializeTuple = Array<'a>;
    type SerializeTupleStruct = Array<'a>;
    type SerializeTupleVariant = Array<'a>;
    type SerializeMap = Object<'a>;
    type SerializeStruct = Object<'a>;
    type SerializeStructVariant = Object<'a>;

    fn serialize_bool(self, v: bool) -> Res {
        self.out
            .extend_from_slice(if v { b"true" } else { b"false" });
        Ok(())
    }
    fn serialize_i8(self, v: i8) -> Res {
        self.integer(v);
        Ok(())
    }
    fn serialize_i16(self, v: i16) -> Res {
        self.integer(v);
        Ok(())
    }
    fn serialize_i32(self, v: i32) -> Res {
        self.integer(v);
        Ok(())
    }
    fn serialize_i64(self, v: i64) -> Res {
        self.integer(v);
        Ok(())
    }
    fn serialize_i128(self, v: i128) -> Res {
        // to_value accepts what fits a u64 or an i64.
        match (i64::try_from(v), u64::try_from(v)) {
            (Ok(i), _) => self.integer(i),
            (_, Ok(u)) => self.integer(u),
            _ => return Err(Error(format!("integer {v} is out of range"))),
        }
        Ok(())
    }
    fn serialize_u8(self, v: u8) -> Res {
        self.integer(v);
        Ok(())
    }
    fn serialize_u16(self, v: u16) -> Res {
        self.integer(v);
        Ok(())
    }
    fn serialize_u32(self, v: u32) -> Res {
        self.integer(v);
        Ok(())
    }
    fn serialize_u64(self, v: u64) -> Res {
        self.integer(v);
        Ok(())
    }
    fn serialize_u128(self, v: u128) -> Res {
        let v = u64::try_from(v).map_err(|_| Error(format!("integer {v} is out of range")))?;
        self.integer(v);
        Ok(())
    }
    fn serialize_f32(self, _v: f32) -> Res {
        Err(no_float())
    }
    fn serialize_f64(self, _v: f64) -> Res {
        Err(no_float())
    }
    fn serialize_char(self, v: char) -> Res {
        self.string(v.encode_utf8(&mut [0u8; 4]));
        Ok(())
    }
    fn serialize_str(self, v: &str) -> Res {
        self.string(v);
        Ok(())
    }
    fn serialize_bytes(self, v: &[u8]) -> Res {
        // serde_json turns bytes into an array of numbers.
        let mut a = ser::Serializer::serialize_seq(self, Some(v.len()))?;
        for b in v {
            ser::SerializeSeq::serialize_element(&mut a, b)?;
        }
        ser::SerializeSeq::end(a)
    }
    fn serialize_none(self) -> Res {
        self.serialize_unit()
    }
    fn serialize_some<T: ?Sized + Serialize>(self, value: &T) -> Res {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Res {
        self.out.extend_from_slice(b"null");
        Ok(())
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Res {
        self.serialize_unit()
    }
    fn serialize_unit_variant(self, _n: &'static str, _i: u32, variant: &'static str) -> Res {
        self.string(variant);
        Ok(())
    }
    fn serialize_newtype_struct<T: ?Sized + Serialize>(self, _n: &'static str, value: &T) -> Res {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _n: &'static str,
        _i: u32,
        variant: &'static str,
        value: &T,
    ) -> Res {
        let mut o = self.open_object();
        ser::SerializeStruct::serialize_field(&mut o, variant, value)?;
        ser::SerializeStruct::end(o)
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Array<'a>, Error> {
        self.out.push(b'[');
        Ok(Array {
            ser: self,
            first: true,
            variant: false,
        })
    }
    fn serialize_tuple(self, len: usize) -> Result<Array<'a>, Error> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(self, _n: &'static str, len: usize) -> Result<Array<'a>, Error> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _n: &'static str,
        _i: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Array<'a>, Error> {
        // {"variant":[...]}: a one-member object, so already in order.
        self.out.push(b'{');
        self.string(variant);
        self.out.extend_from_slice(b":[");
        Ok(Array {
            ser: self,
            first: true,
            variant: true,
        })
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Object<'a>, Error> {
        Ok(self.open_object())
    }
    fn serialize_struct(self, _n: &'static str, _len: usize) -> Result<Object<'a>, Error> {
        Ok(self.open_object())
    }
    fn serialize_struct_variant(
        self,
        _n: &'static str,
        _i: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Object<'a>, Error> {
        // {"variant":{...}}: the outer object has one member; the inner one is sorted.
        self.out.push(b'{');
        self.string(variant);
        self.out.push(b':');
        let mut o = self.open_object();
        o.variant = true;
        Ok(o)
    }
}

pub struct Array<'a> {
    ser: &'a mut Canon,
    first: bool,
    /// A tuple variant: the array sits in a one-member object.
    variant: bool,
}

impl Array<'_> {
    fn element<T: ?Sized + Serialize>(&mut self, value: &T) -> Res {
        if !self.first {
            self.ser.out.push(b',');
        }
        self.first = false;
        value.serialize(&mut *self.ser)
    }

    fn close(self) -> Res {
        self.ser.out.push(b']');
        if self.variant {
            self.ser.out.push(b'}');
        }
        Ok(())
    }
}

/// serde's four array-shaped traits differ only in names: each adds an element and closes.
macro_rules! array_shaped {
    ($($trait:ident :: $add:ident),*) => {$(
        impl ser::$trait for Array<'_> {
            type Ok = ();
            type Error = Error;
            fn $add<T: ?Sized + Serialize>(&mut self, value: &T) -> Res {
                self.element(value)
            }
            fn end(self) -> Res {
                self.close()
            }
        }
    )*};
}

array_shaped!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

pub struct Object<'a> {
    ser: &'a mut Canon,
    /// This object's first entry in `ser.members`.
    base: usize,
    /// Offset just after the opening brace.
    content: usize,
    /// A map key waiting for its value.
    pending: Option<String>,
    /// A struct variant's body: the object sits in a one-member object.
    variant: bool,
}

impl Object<'_> {
    fn member<T: ?Sized + Serialize>(&mut self, key: Key, value: &T) -> Res {
        if self.ser.members.len() > self.base {
            self.ser.out.push(b',');
        }
        let start = self.ser.out.len();
        self.ser.string(key.as_str());
        self.ser.out.push(b':');
        value.serialize(&mut *self.ser)?;
        let end = self.ser.out.len();
        self.ser.members.push(Member { key, start, end });
        Ok(())
    }

    fn close(self) -> Res {
        let content = self.content;
        let members = &mut self.ser.members[self.base..];
        let ordered = members
            .windows(2)
            .all(|w| w[0].key.as_str() < w[1].key.as_str());
        if !ordered {
            // Stable sort, then the last of equal keys wins (as Map::insert would have it).
            members.sort_by(|a, b| a.key.as_str().cmp(b.key.as_str()));
            let body = self.ser.out.split_off(content);
            let mut first = true;
            for (i, m) in members.iter().enumerate() {
                let next_same = members
                    .get(i + 1)
                    .is_some_and(|n| n.key.as_str() == m.key.as_str());
                if next_same {
                    continue;
                }
                if !first {
                    self.ser.out.push(b',');
                }
                first = false;
                self.ser
                    .out
                    .extend_from_slice(&body[m.start - content..m.end - content]);
            }
        }
        self.ser.members.truncate(self.base);
        self.ser.out.push(b'}');
        if self.variant {
            self.ser.out.push(b'}');
        }
        Ok(())
    }
}

impl ser::SerializeMap for Object<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_key<T: ?Sized + Serialize>(&mut self, key: &T) -> Res {
        self.pending = Some(key.serialize(KeyString)?);
        Ok(())
    }
    fn serialize_value<T: ?Sized + Serialize>(&mut self, value: &T) -> Res {
        let key = self
            .pending
            .take()
            .ok_or_else(|| Error("a map value without its key".into()))?;
        self.member(Key::Owned(key), value)
    }
    fn end(self) -> Res {
        self.close()
    }
}

macro_rules! struct_shaped {
    ($($trait:ident),*) => {$(
        impl ser::$trait for Object<'_> {
            type Ok = ();
            type Error = Error;
            fn serialize_field<T: ?Sized + Serialize>(
                &mut self,
                key: &'static str,
                value: &T,
            ) -> Res {
                self.member(Key::Static(key), value)
            }
            fn end(self) -> Res {
                self.close()
            }
        }
    )*};
}

struct_shaped!(SerializeStruct, SerializeStructVariant);

/// Turns a map key into its string, as serde_json does: strings and chars as they are,
/// integers and booleans in decimal or `true`/`false`, unit variants by name.
struct KeyString;

fn not_a_key() -> Error {
    Error("a map key must be a string, a number, a boolean or a unit variant".into())
}

impl ser::Serializer for KeyString {
    type Ok = String;
    type Error = Error;
    type SerializeSeq = ser::Impossible<String, Error>;
    type SerializeTuple = ser::Impossible<String, Error>;
    type SerializeTupleStruct = ser::Impossible<String, Error>;
    type SerializeTupleVariant = ser::Impossible<String, Error>;
    type SerializeMap = ser::Impossible<String, Error>;
    type SerializeStruct = ser::Impossible<String, Error>;
    type SerializeStructVariant = ser::Impossible<String, Error>;

    fn serialize_bool(self, v: bool) -> Result<String, Error> {
        Ok(v.to_string())
    }
    fn serialize_i8(self, v: i8) -> Result<String, Error> {
        Ok(v.to_string())
    }
    fn serialize_i16(self, v: i16) -> Result<String, Error> {
        Ok(v.to_string())
    }
    fn serialize_i32(self, v: i32) -> Result<String, Error> {
        Ok(v.to_string())
    }
    fn serialize_i64(self, v: i64) -> Result<String, Error> {
        Ok(v.to_string())
    }
    fn serialize_i128(self, v: i128) -> Result<String, Error> {
        Ok(v.to_string())
    }
    fn serialize_u8(self, v: u8) -> Result<String, Error> {
        Ok(v.to_string())
    }
    fn serialize_u16(self, v: u16) -> Result<String, Error> {
        Ok(v.to_string())
    }
    fn serialize_u32(self, v: u32) -> Result<String, Error> {
        Ok(v.to_string())
    }
    fn serialize_u64(self, v: u64) -> Result<String, Error> {
        Ok(v.to_string())
    }
    fn serialize_u128(self, v: u128) -> Result<String, Error> {
        Ok(v.to_string())
    }
    fn serialize_f32(self, _v: f32) -> Result<String, Error> {
        Err(no_float())
    }
    fn serialize_f64(self, _v: f64) -> Result<String, Error> {
        Err(no_float())
    }
    fn serialize_char(self, v: char) -> Result<String, Error> {
        Ok(v.to_string())
    }
    fn serialize_str(self, v: &str) -> Result<String, Error> {
        Ok(v.to_owned())
    }
    fn serialize_bytes(self, _v: &[u8]) -> Result<String, Error> {
        Err(not_a_key())
    }
    fn serialize_none(self) -> Result<String, Error> {
        Err(not_a_key())
    }
    fn serialize_some<T: ?Sized + Serialize>(self, _v: &T) -> Result<String, Error> {
        Err(not_a_key())
    }
    fn serialize_unit(self) -> Result<String, Error> {
        Err(not_a_key())
    }
    fn serialize_unit_struct(self, _n: &'static str) -> Result<String, Error> {
        Err(not_a_key())
    }
    fn serialize_unit_variant(
        self,
        _n: &'static str,
        _i: u32,
        variant: &'static str,
    ) -> Result<String, Error> {
        Ok(variant.to_owned())
    }
    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        _n: &'static str,
        value: &T,
    ) -> Result<String, Error> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _n: &'static str,
        _i: u32,
        _v: &'static str,
        _value: &T,
    ) -> Result<String, Error> {
        Err(not_a_key())
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Self::SerializeSeq, Error> {
        Err(not_a_key())
    }
    fn serialize_tuple(self, _len: usize) -> Result<Self::SerializeTuple, Error> {
        Err(not_a_key())
    }
    fn serialize_tuple_struct(
        self,
        _n: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleStruct, Error> {
        Err(not_a_key())
    }
    fn serialize_tuple_variant(
        self,
        _n: &'static str,
        _i: u32,
        _v: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleVariant, Error> {
        Err(not_a_key())
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Self::SerializeMap, Error> {
        Err(not_a_key())
    }
    fn serialize_struct(
        self,
        _n: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStruct, Error> {
        Err(not_a_key())
    }
    fn serialize_struct_variant(
        self,
        _n: &'static str,
        _i: u32,
        _v: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStructVariant, Error> {
        Err(not_a_key())
    }
}
