//! The typed callbacks of the ZEO 5 protocol (spec §4): what the server sends a client
//! unasked, as one-way messages `(0, True, name, args)`.  The server builds them with
//! [`Callback::into_message`]; the client reads them with [`Callback::decode`].
//!
//! Pure data: no I/O, no storage.

use zodb_pickle::Value;
use zodb_storage::{Oid, Tid};

use super::call::BadCall;
use super::message::Message;
use super::reply::{as_oid, as_tid, items};

/// One callback from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Callback {
    /// `invalidateTransaction(tid, oids)`: transaction `tid` (another client's)
    /// changed `oids`.
    InvalidateTransaction {
        /// The committed transaction.
        tid: Tid,
        /// The objects it changed (items that are no oid are skipped).
        oids: Vec<Oid>,
    },
    /// `info({'length': n, 'size': n})`: the storage's object count and size, after a
    /// commit of this client or a pack.
    Info {
        /// Number of objects, if the dict says.
        length: Option<i64>,
        /// Size in bytes, if the dict says.
        size: Option<i64>,
    },
    /// `receiveBlobStart(oid, serial)`: a blob revision's file follows (the answer to
    /// `sendBlob`, before its reply).
    ReceiveBlobStart {
        /// The object.
        oid: Oid,
        /// The revision.
        serial: Tid,
    },
    /// `receiveBlobChunk(oid, serial, chunk)`: the next bytes of that file.
    ReceiveBlobChunk {
        /// The object.
        oid: Oid,
        /// The revision.
        serial: Tid,
        /// Up to 59,000 bytes, as Python's server sends them.
        chunk: Vec<u8>,
    },
    /// `receiveBlobStop(oid, serial)`: the file is complete.
    ReceiveBlobStop {
        /// The object.
        oid: Oid,
        /// The revision.
        serial: Tid,
    },
}

impl Callback {
    /// The callback's name on the wire.
    pub fn name(&self) -> &'static str {
        match self {
            Callback::InvalidateTransaction { .. } => "invalidateTransaction",
            Callback::Info { .. } => "info",
            Callback::ReceiveBlobStart { .. } => "receiveBlobStart",
            Callback::ReceiveBlobChunk { .. } => "receiveBlobChunk",
            Callback::ReceiveBlobStop { .. } => "receiveBlobStop",
        }
    }

    /// Reads a callback from its name and `args`.
    pub fn decode(name: &str, args: &Value) -> Result<Callback, BadCall> {
        let args = items(args).unwrap_or_default();
        match name {
            "invalidateTransaction" => {
                let (tid, oids) = match args {
                    [tid, oids, ..] => (as_tid(tid), oids),
                    _ => (None, &Value::None),
                };
                let tid = tid.ok_or(BadCall::Args {
                    method: "invalidateTransaction",
                    needs: "a tid",
                })?;
                let oids = items(oids)
                    .unwrap_or_default()
                    .iter()
                    .filter_map(as_oid)
                    .collect();
                Ok(Callback::InvalidateTransaction { tid, oids })
            }
            "info" => {
                let info = args.first();
                let int = |key| info.and_then(|i| i.get(key)).and_then(Value::as_i64);
                Ok(Callback::Info {
                    length: int("length"),
                    size: int("size"),
                })
            }
            "receiveBlobStart" | "receiveBlobChunk" | "receiveBlobStop" => {
                let (oid, serial) = match args {
                    [oid, serial, ..] => (as_oid(oid), as_tid(serial)),
                    _ => (None, None),
                };
                let (Some(oid), Some(serial)) = (oid, serial) else {
                    return Err(BadCall::Args {
                        method: "receiveBlob",
                        needs: "an oid and a serial",
                    });
                };
                Ok(match name {
                    "receiveBlobStart" => Callback::ReceiveBlobStart { oid, serial },
                    "receiveBlobStop" => Callback::ReceiveBlobStop { oid, serial },
                    _ => Callback::ReceiveBlobChunk {
                        oid,
                        serial,
                        chunk: match args.get(2) {
                            Some(Value::Bytes(b)) => b.clone(),
                            _ => {
                                return Err(BadCall::Args {
                                    method: "receiveBlobChunk",
                                    needs: "a chunk of bytes",
                                });
                            }
                        },
                    },
                })
            }
            other => Err(BadCall::Unknown(other.to_string())),
        }
    }

    /// The one-way message the server sends.
    pub fn into_message(self) -> Message {
        let name = self.name();
        let bytes = |b: [u8; 8]| Value::Bytes(b.to_vec());
        let args = match self {
            Callback::InvalidateTransaction { tid, oids } => vec![
                bytes(tid.to_bytes()),
                Value::List(oids.into_iter().map(|o| bytes(o.to_bytes())).collect()),
            ],
            Callback::Info { length, size } => {
                let mut d = Vec::new();
                if let Some(n) = length {
                    d.push((Value::str("length"), Value::Int(n)));
                }
                if let Some(n) = size {
                    d.push((Value::str("size"), Value::Int(n)));
                }
                vec![Value::Dict(d)]
            }
            Callback::ReceiveBlobStart { oid, serial }
            | Callback::ReceiveBlobStop { oid, serial } => {
                vec![bytes(oid.to_bytes()), bytes(serial.to_bytes())]
            }
            Callback::ReceiveBlobChunk { oid, serial, chunk } => vec![
                bytes(oid.to_bytes()),
                bytes(serial.to_bytes()),
                Value::Bytes(chunk),
            ],
        };
        Message::callback(name, args)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn round_trip(c: Callback) {
        let msg = c.clone().into_message();
        assert!(msg.is_async());
        assert_eq!(Callback::decode(&msg.name, &msg.args).unwrap(), c);
    }

    #[test]
    fn callbacks_round_trip() {
        round_trip(Callback::InvalidateTransaction {
            tid: Tid(9),
            oids: vec![Oid(1), Oid(2)],
        });
        round_trip(Callback::Info {
            length: Some(3),
            size: Some(1000),
        });
    }

    #[test]
    fn malformed_and_unknown_callbacks_are_errors() {
        let args = Value::Tuple(vec![Value::None, Value::List(vec![])]);
        assert_eq!(
            Callback::decode("invalidateTransaction", &args)
                .unwrap_err()
                .to_string(),
            "invalidateTransaction needs a tid"
        );
        assert!(Callback::decode("surprise", &Value::Tuple(vec![])).is_err());
        assert!(Callback::decode("receiveBlobChunk", &Value::None).is_err());
        round_trip(Callback::ReceiveBlobStart {
            oid: Oid(1),
            serial: Tid(2),
        });
        round_trip(Callback::ReceiveBlobChunk {
            oid: Oid(1),
            serial: Tid(2),
            chunk: b"bytes".to_vec(),
        });
        round_trip(Callback::ReceiveBlobStop {
            oid: Oid(1),
            serial: Tid(2),
        });
    }
}
