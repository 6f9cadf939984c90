//! Typed persistent objects: the [`Persistent`] trait, typed references ([`PRef`]) and the
//! [`persistent!`](crate::persistent) macro that implements the trait through serde.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::marker::PhantomData;

use serde::de::IgnoredAny;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zodb_pickle::Value;
use zodb_storage::Oid;

use crate::resolve::Unresolved;
use crate::state::{PREF_TOKEN, PidKind, StateError, parse_pid, ref_value};

/// A Rust type whose values are stored as ZODB objects.
///
/// The class is what Python sees in the record's class pickle (record-format §2): a dotted
/// module path and a name, e.g. `bbru.content` / `Folder`; Python without that module loads
/// the object as a broken object and still finds its references.  The state is a pickle
/// [`Value`], for plain structs a `dict` of their fields (use [`persistent!`](crate::persistent)).
///
/// `Clone` is what makes editing safe: an object being edited while another holder still
/// reads it is copied first (copy on write), so readers never see half of a change.
pub trait Persistent: Clone + Send + Sync + 'static {
    /// The module part of the class name.
    const MODULE: &'static str;
    /// The class name inside the module.
    const NAME: &'static str;

    /// The object's state, as its record stores it.
    fn to_state(&self) -> Result<Value, StateError>;

    /// The object back from a stored state.
    fn from_state(state: Value) -> Result<Self, StateError>;

    /// The object's whole record (class and state pickles) written directly, with the
    /// oids its strong references name added to `refs` when given; `None` when the type
    /// has no direct writing or its state holds what it leaves to
    /// [`Persistent::to_state`] and the encoder (which then write it, or refuse it).
    /// [`persistent!`](crate::persistent) implements it through serde: the same bytes
    /// as encoding `to_state`, without building the state first.
    fn to_record(&self, refs: Option<&mut Vec<Oid>>) -> Option<Vec<u8>> {
        let _ = refs;
        None
    }

    /// The object straight from its record's state, read in place without building a
    /// [`Value`]; `None` when the type has no such reading or the state holds a shape it
    /// leaves to [`Persistent::from_state`] (which then reads it and reports any error).
    /// [`persistent!`](crate::persistent) implements it through serde: the same reading
    /// as `from_state`, without copying every string and container twice.
    fn from_state_view(state: crate::state::StateView<'_>) -> Option<Self> {
        let _ = state;
        None
    }

    /// Merges a change committed by another transaction with this transaction's
    /// (ZODB's `_p_resolveConflict`; see [`crate::resolve`]): `old` is the state this
    /// transaction started from, `committed` the one committed since, `new` this
    /// transaction's.  Returns the merged state, or [`Unresolved`] when the changes
    /// overlap.  The default resolves nothing, so a conflict on the class reaches the
    /// application (which retries the whole transaction).
    fn resolve_conflict(old: Value, committed: Value, new: Value) -> Result<Value, Unresolved> {
        let _ = (old, committed, new);
        Err(Unresolved::no_resolver(Self::MODULE, Self::NAME))
    }
}

/// Implements [`Persistent`] for a type that derives serde's `Serialize` and `Deserialize`:
/// the state is the `dict` of its fields.
///
/// ```
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Clone, Serialize, Deserialize)]
/// struct Page {
///     title: String,
///     body: String,
/// }
/// zodb::persistent!(Page, "bbru.content", "Page");
/// ```
///
/// With `resolve = f`, `f(old, committed, new) -> Result<Self, Unresolved>` resolves
/// conflicts on the type (see [`Persistent::resolve_conflict`]):
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use zodb::resolve::Unresolved;
///
/// /// A hit counter that concurrent increments never make conflict.
/// #[derive(Clone, Serialize, Deserialize)]
/// struct Hits {
///     count: i64,
/// }
///
/// fn add_both(old: Hits, committed: Hits, new: Hits) -> Result<Hits, Unresolved> {
///     Ok(Hits { count: committed.count + new.count - old.count })
/// }
/// zodb::persistent!(Hits, "example", "Hits", resolve = add_both);
/// ```
#[macro_export]
macro_rules! persistent {
    ($ty:ty, $module:literal, $name:literal) => {
        $crate::persistent!(@impl $ty, $module, $name, {});
    };
    ($ty:ty, $module:literal, $name:literal, resolve = $resolve:expr) => {
        $crate::persistent!(@impl $ty, $module, $name, {
            fn resolve_conflict(
                old: $crate::Value,
                committed: $crate::Value,
                new: $crate::Value,
            ) -> ::std::result::Result<$crate::Value, $crate::resolve::Unresolved> {
                $crate::resolve::typed::<Self>(old, committed, new, $resolve)
            }
        });
    };
    (@impl $ty:ty, $module:literal, $name:literal, { $($extra:tt)* }) => {
        impl $crate::Persistent for $ty {
            const MODULE: &'static str = $module;
            const NAME: &'static str = $name;

            fn to_state(&self) -> ::std::result::Result<$crate::Value, $crate::state::StateError> {
                $crate::state::to_value(self)
            }

            fn from_state(
                state: $crate::Value,
            ) -> ::std::result::Result<Self, $crate::state::StateError> {
                $crate::state::from_value(state)
            }

            fn to_record(
                &self,
                refs: ::std::option::Option<&mut ::std::vec::Vec<$crate::Oid>>,
            ) -> ::std::option::Option<::std::vec::Vec<u8>> {
                $crate::state::to_record((Self::MODULE, Self::NAME), self, refs)
            }

            fn from_state_view(state: $crate::state::StateView<'_>) -> ::std::option::Option<Self> {
                $crate::state::from_view(state).ok()
            }

            $($extra)*
        }
    };
}

/// A reference to a persistent object of type `T`: an oid, typed.  It is what a state
/// holds to point at another object (stored as `(oid, class)`, form A of record-format
/// §4), and what a [`crate::Transaction`] resolves (`tx.get(r)`, `tx.edit(r)`).
///
/// Resolving checks the record's class against `T`, so a reference can never hand out an
/// object of another type.
pub struct PRef<T> {
    oid: Oid,
    _type: PhantomData<fn() -> T>,
}

impl<T> PRef<T> {
    /// A reference to `oid`, trusted to be a `T` (checked when resolved).
    pub fn from_oid(oid: Oid) -> PRef<T> {
        PRef {
            oid,
            _type: PhantomData,
        }
    }

    pub fn oid(&self) -> Oid {
        self.oid
    }

    /// The same oid seen as another type (checked when resolved).
    pub fn cast<U>(&self) -> PRef<U> {
        PRef::from_oid(self.oid)
    }
}

impl<T: Persistent> PRef<T> {
    /// The persistent-reference value of this reference, to put inside a state built by
    /// hand (e.g. a value of a [`crate::PersistentMapping`]).
    pub fn to_value(&self) -> Value {
        ref_value(self.oid, Some((T::MODULE, T::NAME)))
    }

    /// The strong reference held by `value`, if it is one (any class: resolution checks).
    pub fn from_value(value: &Value) -> Option<PRef<T>> {
        match value {
            Value::PersistentRef(pid) => match parse_pid(pid)? {
                PidKind::Strong { oid, .. } => Some(PRef::from_oid(oid)),
                _ => None,
            },
            _ => None,
        }
    }
}

impl<T> Clone for PRef<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for PRef<T> {}

impl<T> PartialEq for PRef<T> {
    fn eq(&self, other: &Self) -> bool {
        self.oid == other.oid
    }
}

impl<T> Eq for PRef<T> {}

impl<T> PartialOrd for PRef<T> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl<T> Ord for PRef<T> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.oid.cmp(&other.oid)
    }
}

impl<T> Hash for PRef<T> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.oid.hash(state);
    }
}

impl<T> fmt::Debug for PRef<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PRef({:?})", self.oid)
    }
}

impl<T: Persistent> Serialize for PRef<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_newtype_struct(PREF_TOKEN, &(self.oid.0, T::MODULE, T::NAME))
    }
}

impl<'de, T> Deserialize<'de> for PRef<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RefVisitor<T>(PhantomData<fn() -> T>);

        impl<'de, T> serde::de::Visitor<'de> for RefVisitor<T> {
            type Value = PRef<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a persistent reference")
            }

            fn visit_newtype_struct<D: Deserializer<'de>>(
                self,
                deserializer: D,
            ) -> Result<PRef<T>, D::Error> {
                // The class is checked when the reference is resolved, not here.
                let (oid, _, _) = <(u64, IgnoredAny, IgnoredAny)>::deserialize(deserializer)?;
                Ok(PRef::from_oid(Oid(oid)))
            }
        }

        deserializer.deserialize_newtype_struct(PREF_TOKEN, RefVisitor(PhantomData))
    }
}

/// A reference to a persistent object of any class, with the class the referrer recorded:
/// what a container whose items are of several types holds.  Stored like a [`PRef`]
/// (`(oid, class)`, form A); a bare-oid reference (form B, as Python writes for some
/// classes) reads with no class, which [`crate::Transaction::class_of`] then finds.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct AnyRef {
    oid: Oid,
    class: Option<(String, String)>,
}

impl AnyRef {
    /// The reference `r`, with its type's class.
    pub fn new<T: Persistent>(r: PRef<T>) -> AnyRef {
        AnyRef {
            oid: r.oid(),
            class: Some((T::MODULE.to_owned(), T::NAME.to_owned())),
        }
    }

    /// A reference to `oid` whose class is not known.
    pub fn untyped(oid: Oid) -> AnyRef {
        AnyRef { oid, class: None }
    }

    pub fn oid(&self) -> Oid {
        self.oid
    }

    /// The class recorded with the reference, if any.
    pub fn class(&self) -> Option<(&str, &str)> {
        self.class.as_ref().map(|(m, n)| (m.as_str(), n.as_str()))
    }

    /// Whether the recorded class is `T`'s.
    pub fn is<T: Persistent>(&self) -> bool {
        self.class() == Some((T::MODULE, T::NAME))
    }

    /// The typed reference, when the recorded class is `T`'s.
    pub fn downcast<T: Persistent>(&self) -> Option<PRef<T>> {
        self.is::<T>().then(|| PRef::from_oid(self.oid))
    }
}

impl fmt::Debug for AnyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.class() {
            Some((m, n)) => write!(f, "AnyRef({:?}, {m}.{n})", self.oid),
            None => write!(f, "AnyRef({:?})", self.oid),
        }
    }
}

impl<T: Persistent> From<PRef<T>> for AnyRef {
    fn from(r: PRef<T>) -> AnyRef {
        AnyRef::new(r)
    }
}

impl Serialize for AnyRef {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let (module, name) = self.class().unwrap_or(("", ""));
        serializer.serialize_newtype_struct(PREF_TOKEN, &(self.oid.0, module, name))
    }
}

impl<'de> Deserialize<'de> for AnyRef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RefVisitor;

        impl<'de> serde::de::Visitor<'de> for RefVisitor {
            type Value = AnyRef;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a persistent reference")
            }

            fn visit_newtype_struct<D: Deserializer<'de>>(
                self,
                deserializer: D,
            ) -> Result<AnyRef, D::Error> {
                let (oid, module, name) = <(u64, String, String)>::deserialize(deserializer)?;
                let class = (!module.is_empty()).then_some((module, name));
                Ok(AnyRef {
                    oid: Oid(oid),
                    class,
                })
            }
        }

        deserializer.deserialize_newtype_struct(PREF_TOKEN, RefVisitor)
    }
}
