//! Two small serializers the direct pickler (`pickler.rs`) needs: [`RefParts`], which
//! takes the `(oid, module, name)` a [`crate::PRef`] or [`crate::AnyRef`] serializes as
//! without building anything, and [`Scan`], a first pass that finds the classes named
//! more than once in a record (the encoder memoizes exactly those, so the direct pickle
//! is the encoder's byte for byte).

use serde::ser::{self, Impossible, Serialize};

use super::{PREF_TOKEN, StateError};

/// Anything that is not the shape looked for: the caller takes the long way.
pub(super) fn unsupported() -> StateError {
    StateError("written through the value tree".into())
}

/// The parts of a reference: oid, module, name (empty when the class is unknown).  One
/// is reused for every reference of a record, so reading one allocates nothing.
#[derive(Default)]
pub(super) struct RefParts {
    pub(super) oid: u64,
    pub(super) module: String,
    pub(super) name: String,
    next: usize,
}

impl RefParts {
    /// Reads a reference's newtype content into `self`.
    pub(super) fn read<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), StateError> {
        self.next = 0;
        self.module.clear();
        self.name.clear();
        value.serialize(&mut *self)?;
        if self.next != 3 {
            return Err(unsupported());
        }
        Ok(())
    }
}

impl ser::SerializeTuple for &mut RefParts {
    type Ok = ();
    type Error = StateError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), StateError> {
        let mut part = match self.next {
            0 => Part::Int(None),
            1 => Part::Text(&mut self.module, false),
            2 => Part::Text(&mut self.name, false),
            _ => return Err(unsupported()),
        };
        value.serialize(&mut part)?;
        match part {
            Part::Int(Some(oid)) => self.oid = oid,
            Part::Text(_, true) => {}
            _ => return Err(unsupported()),
        }
        self.next += 1;
        Ok(())
    }
    fn end(self) -> Result<(), StateError> {
        Ok(())
    }
}

/// One part of a reference: the oid, or a text written into a reused string (and
/// whether it was).
enum Part<'a> {
    Int(Option<u64>),
    Text(&'a mut String, bool),
}

/// Serializer methods that refuse: every shape but the few a serializer reads.
macro_rules! refuse_rest {
    ($($method:ident($($arg:ty),*);)*) => {
        $(fn $method(self, $(_: $arg),*) -> Result<Self::Ok, StateError> {
            Err(unsupported())
        })*
    };
}

/// Compound serializer methods that refuse.
macro_rules! refuse_compound {
    () => {
        fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, StateError> {
            Err(unsupported())
        }
        fn serialize_tuple_struct(
            self,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeTupleStruct, StateError> {
            Err(unsupported())
        }
        fn serialize_tuple_variant(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeTupleVariant, StateError> {
            Err(unsupported())
        }
        fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, StateError> {
            Err(unsupported())
        }
        fn serialize_struct(
            self,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeStruct, StateError> {
            Err(unsupported())
        }
        fn serialize_struct_variant(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeStructVariant, StateError> {
            Err(unsupported())
        }
        fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<Self::Ok, StateError> {
            Err(unsupported())
        }
        fn serialize_newtype_struct<T: Serialize + ?Sized>(
            self,
            _: &'static str,
            _: &T,
        ) -> Result<Self::Ok, StateError> {
            Err(unsupported())
        }
        fn serialize_newtype_variant<T: Serialize + ?Sized>(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: &T,
        ) -> Result<Self::Ok, StateError> {
            Err(unsupported())
        }
    };
}

impl ser::Serializer for &mut Part<'_> {
    type Ok = ();
    type Error = StateError;
    type SerializeSeq = Impossible<(), StateError>;
    type SerializeTuple = Impossible<(), StateError>;
    type SerializeTupleStruct = Impossible<(), StateError>;
    type SerializeTupleVariant = Impossible<(), StateError>;
    type SerializeMap = Impossible<(), StateError>;
    type SerializeStruct = Impossible<(), StateError>;
    type SerializeStructVariant = Impossible<(), StateError>;

    fn serialize_u64(self, v: u64) -> Result<(), StateError> {
        match self {
            Part::Int(slot) => *slot = Some(v),
            Part::Text(..) => return Err(unsupported()),
        }
        Ok(())
    }
    fn serialize_str(self, v: &str) -> Result<(), StateError> {
        match self {
            Part::Text(text, written) => {
                text.push_str(v);
                *written = true;
            }
            Part::Int(_) => return Err(unsupported()),
        }
        Ok(())
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, StateError> {
        Err(unsupported())
    }
    refuse_rest! {
        serialize_bool(bool); serialize_i8(i8); serialize_i16(i16); serialize_i32(i32);
        serialize_i64(i64); serialize_u8(u8); serialize_u16(u16); serialize_u32(u32);
        serialize_f32(f32); serialize_f64(f64); serialize_char(char); serialize_bytes(&[u8]);
        serialize_none(); serialize_unit(); serialize_unit_struct(&'static str);
        serialize_unit_variant(&'static str, u32, &'static str);
    }
    refuse_compound!();
}

impl ser::Serializer for &mut RefParts {
    type Ok = ();
    type Error = StateError;
    type SerializeSeq = Impossible<(), StateError>;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Impossible<(), StateError>;
    type SerializeTupleVariant = Impossible<(), StateError>;
    type SerializeMap = Impossible<(), StateError>;
    type SerializeStruct = Impossible<(), StateError>;
    type SerializeStructVariant = Impossible<(), StateError>;

    fn serialize_tuple(self, len: usize) -> Result<Self, StateError> {
        if len != 3 {
            return Err(unsupported());
        }
        Ok(self)
    }
    refuse_rest! {
        serialize_bool(bool); serialize_i8(i8); serialize_i16(i16); serialize_i32(i32);
        serialize_i64(i64); serialize_u8(u8); serialize_u16(u16); serialize_u32(u32);
        serialize_u64(u64); serialize_f32(f32); serialize_f64(f64); serialize_char(char);
        serialize_str(&str); serialize_bytes(&[u8]); serialize_none(); serialize_unit();
        serialize_unit_struct(&'static str);
        serialize_unit_variant(&'static str, u32, &'static str);
    }
    refuse_compound!();
}

/// The first pass: counts the classes the references of a state name (with one count
/// for the record's own class, named by P1).
pub(super) struct Scan {
    /// Each class met, with how often; a record names few.
    pub(super) classes: Vec<((String, String), usize)>,
    parts: RefParts,
}

impl Scan {
    pub(super) fn new(class: (&str, &str)) -> Scan {
        Scan {
            classes: vec![((class.0.to_owned(), class.1.to_owned()), 1)],
            parts: RefParts::default(),
        }
    }

    /// Counts the class of the reference just read into `parts`.
    fn count(&mut self) {
        let (module, name) = (&self.parts.module, &self.parts.name);
        match self
            .classes
            .iter_mut()
            .find(|((m, n), _)| m == module && n == name)
        {
            Some((_, count)) => *count += 1,
            None => self.classes.push(((module.clone(), name.clone()), 1)),
        }
    }
}

impl ser::Serializer for &mut Scan {
    type Ok = ();
    type Error = StateError;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Self;
    type SerializeStruct = Self;
    type SerializeStructVariant = Self;

    fn serialize_bool(self, _: bool) -> Result<(), StateError> {
        Ok(())
    }
    fn serialize_i64(self, _: i64) -> Result<(), StateError> {
        Ok(())
    }
    fn serialize_u64(self, _: u64) -> Result<(), StateError> {
        Ok(())
    }
    fn serialize_i128(self, _: i128) -> Result<(), StateError> {
        Ok(())
    }
    fn serialize_u128(self, _: u128) -> Result<(), StateError> {
        Ok(())
    }
    fn serialize_f64(self, _: f64) -> Result<(), StateError> {
        Ok(())
    }
    fn serialize_str(self, _: &str) -> Result<(), StateError> {
        Ok(())
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<(), StateError> {
        Ok(())
    }
    fn serialize_none(self) -> Result<(), StateError> {
        Ok(())
    }
    fn serialize_unit(self) -> Result<(), StateError> {
        Ok(())
    }
    fn serialize_i8(self, _: i8) -> Result<(), StateError> {
        Ok(())
    }
    fn serialize_i16(self, _: i16) -> Result<(), StateError> {
        Ok(())
    }
    fn serialize_i32(self, _: i32) -> Result<(), StateError> {
        Ok(())
    }
    fn serialize_u8(self, _: u8) -> Result<(), StateError> {
        Ok(())
    }
    fn serialize_u16(self, _: u16) -> Result<(), StateError> {
        Ok(())
    }
    fn serialize_u32(self, _: u32) -> Result<(), StateError> {
        Ok(())
    }
    fn serialize_f32(self, _: f32) -> Result<(), StateError> {
        Ok(())
    }
    fn serialize_char(self, _: char) -> Result<(), StateError> {
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), StateError> {
        Ok(())
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
    ) -> Result<(), StateError> {
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), StateError> {
        value.serialize(self)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result<(), StateError> {
        if name != PREF_TOKEN {
            return value.serialize(self);
        }
        self.parts.read(value)?;
        if !self.parts.module.is_empty() {
            self.count();
        }
        Ok(())
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        value: &T,
    ) -> Result<(), StateError> {
        value.serialize(self)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self, StateError> {
        Ok(self)
    }
    fn serialize_tuple(self, _: usize) -> Result<Self, StateError> {
        Ok(self)
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self, StateError> {
        Ok(self)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self, StateError> {
        Ok(self)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self, StateError> {
        Ok(self)
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self, StateError> {
        Ok(self)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self, StateError> {
        Ok(self)
    }
}

/// The compound parts of [`Scan`]: every element is scanned in turn.
macro_rules! scan_compound {
    ($($trait:ident: $method:ident;)*) => {
        $(impl ser::$trait for &mut Scan {
            type Ok = ();
            type Error = StateError;
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), StateError> {
                value.serialize(&mut **self)
            }
            fn end(self) -> Result<(), StateError> {
                Ok(())
            }
        })*
    };
}

scan_compound! {
    SerializeSeq: serialize_element;
    SerializeTuple: serialize_element;
    SerializeTupleStruct: serialize_field;
    SerializeTupleVariant: serialize_field;
}

impl ser::SerializeMap for &mut Scan {
    type Ok = ();
    type Error = StateError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), StateError> {
        key.serialize(&mut **self)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), StateError> {
        value.serialize(&mut **self)
    }
    fn end(self) -> Result<(), StateError> {
        Ok(())
    }
}

/// The struct-shaped parts of [`Scan`]: field names are not scanned.
macro_rules! scan_struct {
    ($($trait:ident;)*) => {
        $(impl ser::$trait for &mut Scan {
            type Ok = ();
            type Error = StateError;
            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                _: &'static str,
                value: &T,
            ) -> Result<(), StateError> {
                value.serialize(&mut **self)
            }
            fn end(self) -> Result<(), StateError> {
                Ok(())
            }
        })*
    };
}

scan_struct! {
    SerializeStruct;
    SerializeStructVariant;
}
