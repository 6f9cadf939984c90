//! Every limit of the storage layer, in one place. Names end in their
//! qualifier (`_max`, `_count`).

/// Bytes of a transaction's user, description, or extension: each is
/// written with a 2-byte length in a FileStorage transaction header.
pub const TXN_META_FIELD_SIZE_MAX: usize = u16::MAX as usize;

/// Bytes of one object record. FileStorage has room for 2^64, but one
/// record is read into memory whole; a bigger object belongs in a blob.
pub const RECORD_SIZE_MAX: u64 = 256 * 1024 * 1024;

/// Oids handed out by one `new_oids` call.
pub const NEW_OIDS_COUNT_MAX: usize = 10_000;

/// Revisions `history` returns at most, whatever the caller asks for.
pub const HISTORY_SIZE_MAX: usize = 100_000;

/// Hops a backpointer chain may take before the
/// reader calls it corrupt (every hop must also point strictly backwards).
pub const BACKPOINTER_CHAIN_LENGTH_MAX: usize = 10_000;

/// Transactions a FileStorage remembers the position and tid of (the newest it wrote),
/// so that the serial of a record in them needs no read of the file (16 bytes each:
/// 1 MiB).  A store or deletion checks the serial of the object's current record; the
/// objects clients change are mostly the ones changed lately, in the last few thousand
/// transactions.
pub const RECENT_TRANSACTIONS_MAX: usize = 1 << 16;

/// Bytes of records a FileStorage keeps of what loads read (the record cache), so that a
/// record read again costs no read of the file: after a commit every client that had the
/// object reloads it, and several clients load the same objects.  16 MiB holds about
/// 100,000 records of the usual size, and is little beside a server's other memory.
pub const RECORD_CACHE_BYTES_MAX: usize = 16 << 20;

/// Largest record the record cache keeps: larger ones are rare, and reading them is
/// dominated by the copy, not by the system call the cache saves.
pub const RECORD_CACHE_RECORD_BYTES_MAX: usize = 16 << 10;

/// Slots of the record cache (one record each, chosen by the oid): with the records'
/// bookkeeping, 3 MiB at most, allocated as loads fill them.
pub const RECORD_CACHE_SLOTS: usize = 1 << 16;
