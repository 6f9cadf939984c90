//! The replies of `history` and `undoLog`/`undoInfo` (spec §3): lists of dicts in which
//! FileStorage merges the transaction's extension with the standard keys (`tid` or `id`,
//! `time`, `user_name`, `description`, `size`).  The server writes them from the
//! storage's entries; the client reads them back, taking the keys that are not standard
//! as the extension.
//!
//! Pure data: no I/O, no storage.

use zodb_pickle::Value;
use zodb_storage::{HistoryEntry, Tid, UndoLogEntry, parse_undo_id, undo_id};

use super::reply::{BadReply, as_tid, extension_dict, extension_pickle, items, text_bytes};

/// The keys `history` and `undoLog` dicts carry besides the extension's.
const STANDARD_KEYS: &[&str] = &["id", "time", "tid", "user_name", "description", "size"];

/// The extension's items, then `standard` (Python: the extension dict updated with the
/// standard keys).
fn merged(extension: &[u8], standard: [(&str, Value); 5]) -> Value {
    let mut d = match extension_dict(extension) {
        Value::Dict(d) => d,
        _ => Vec::new(),
    };
    d.extend(standard.map(|(k, v)| (Value::str(k), v)));
    Value::Dict(d)
}

/// `history`'s reply: one dict per revision, newest first.
pub fn history_reply(entries: Vec<HistoryEntry>) -> Value {
    Value::List(
        entries
            .into_iter()
            .map(|h| {
                merged(
                    &h.extension,
                    [
                        ("time", Value::Float(h.time)),
                        ("tid", Value::Bytes(h.tid.to_bytes().to_vec())),
                        ("user_name", Value::Bytes(h.user)),
                        ("description", Value::Bytes(h.description)),
                        ("size", Value::Int(h.size as i64)),
                    ],
                )
            })
            .collect(),
    )
}

/// One `undoLog` / `undoInfo` dict (the server filters `undoInfo` on these).
pub fn undo_log_dict(u: UndoLogEntry) -> Value {
    merged(
        &u.extension,
        [
            ("id", Value::Bytes(undo_id(u.tid).into_bytes())),
            ("time", Value::Float(u.time)),
            ("user_name", Value::Bytes(u.user)),
            ("description", Value::Bytes(u.description)),
            ("size", Value::Int(u.size as i64)),
        ],
    )
}

fn number(v: Option<&Value>) -> Option<f64> {
    match v {
        Some(Value::Float(f)) => Some(*f),
        Some(Value::Int(i)) => Some(*i as f64),
        _ => None,
    }
}

fn count(v: Option<&Value>) -> u64 {
    v.and_then(Value::as_i64)
        .and_then(|i| u64::try_from(i).ok())
        .unwrap_or(0)
}

fn text(v: Option<&Value>) -> Vec<u8> {
    v.map(text_bytes).unwrap_or_default()
}

/// Splits a dict into the dict and its extension (the keys that are not standard,
/// re-pickled).
fn split_info_dict(v: &Value) -> Option<(&Value, Vec<u8>)> {
    let Value::Dict(pairs) = v else {
        return None;
    };
    let extension: Vec<(Value, Value)> = pairs
        .iter()
        .filter(|(k, _)| !k.as_str().is_some_and(|k| STANDARD_KEYS.contains(&k)))
        .cloned()
        .collect();
    Some((v, extension_pickle(&Value::Dict(extension)).ok()?))
}

/// Reads [`history_reply`] (a missing time is the tid's; a missing size zero).
pub fn read_history_reply(reply: &Value) -> Result<Vec<HistoryEntry>, BadReply> {
    let list = items(reply).ok_or_else(|| BadReply::new("history", reply))?;
    list.iter()
        .map(|item| {
            let bad = || BadReply::new("history", item);
            let (d, extension) = split_info_dict(item).ok_or_else(bad)?;
            let tid: Tid = d.get("tid").and_then(as_tid).ok_or_else(bad)?;
            Ok(HistoryEntry {
                tid,
                time: number(d.get("time")).unwrap_or_else(|| tid.unix_seconds()),
                user: text(d.get("user_name")),
                description: text(d.get("description")),
                extension,
                size: count(d.get("size")),
            })
        })
        .collect()
}

/// Reads a list of [`undo_log_dict`]s.
pub fn read_undo_log_reply(reply: &Value) -> Result<Vec<UndoLogEntry>, BadReply> {
    let list = items(reply).ok_or_else(|| BadReply::new("undoLog", reply))?;
    list.iter()
        .map(|item| {
            let (d, extension) =
                split_info_dict(item).ok_or_else(|| BadReply::new("undoLog", item))?;
            let id = text(d.get("id"));
            let tid = std::str::from_utf8(&id)
                .ok()
                .and_then(|s| parse_undo_id(s.trim()))
                .ok_or_else(|| BadReply::new("undoLog (undo id)", item))?;
            Ok(UndoLogEntry {
                tid,
                time: number(d.get("time")).unwrap_or_else(|| tid.unix_seconds()),
                user: text(d.get("user_name")),
                description: text(d.get("description")),
                extension,
                size: count(d.get("size")),
            })
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn extension() -> Vec<u8> {
        zodb_pickle::encode_like_python(&Value::Dict(vec![(Value::str("note"), Value::str("ß"))]))
            .unwrap()
    }

    #[test]
    fn history_round_trips_with_its_extension() {
        let h = HistoryEntry {
            tid: Tid(0x0405_ed58_1777_7777),
            time: 1.5,
            user: b"bob".to_vec(),
            description: b"d".to_vec(),
            extension: extension(),
            size: 12,
        };
        assert_eq!(
            read_history_reply(&history_reply(vec![h.clone()])).unwrap(),
            vec![h]
        );
        assert!(read_history_reply(&Value::Int(1)).is_err());
    }

    #[test]
    fn history_dict_as_python_merges_it() {
        let tid = Tid(0x0405_ed58_1777_7777);
        let d = Value::Dict(vec![
            (Value::str("time"), Value::Float(1.5)),
            (Value::str("user_name"), Value::Bytes(b"bob".to_vec())),
            (Value::str("description"), Value::Bytes(b"d".to_vec())),
            (Value::str("tid"), Value::Bytes(tid.to_bytes().to_vec())),
            (Value::str("size"), Value::Int(12)),
            (Value::str("note"), Value::str("ß")),
        ]);
        let h = read_history_reply(&Value::List(vec![d])).unwrap();
        assert_eq!(h.len(), 1);
        assert_eq!((h[0].tid, h[0].size, h[0].time), (tid, 12, 1.5));
        assert_eq!(h[0].user, b"bob");
        let (ext, _) = zodb_pickle::decode(&h[0].extension).unwrap();
        assert_eq!(
            ext,
            Value::Dict(vec![(Value::str("note"), Value::str("ß"))])
        );
    }

    #[test]
    fn undo_log_round_trips_with_its_extension() {
        let u = UndoLogEntry {
            tid: Tid(0x0405_ed58_1777_7777),
            time: 2.5,
            user: b"ann".to_vec(),
            description: b"e".to_vec(),
            extension: extension(),
            size: 40,
        };
        let reply = Value::List(vec![undo_log_dict(u.clone())]);
        assert_eq!(read_undo_log_reply(&reply).unwrap(), vec![u]);
        let bad = Value::List(vec![Value::Dict(vec![(Value::str("id"), Value::str("?"))])]);
        assert!(
            read_undo_log_reply(&bad)
                .unwrap_err()
                .to_string()
                .contains("undo id")
        );
    }
}
