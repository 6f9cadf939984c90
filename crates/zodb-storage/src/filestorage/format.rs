//! Byte layouts of `Data.fs`: the file magic, transaction headers and data
//! record headers. Encoding and decoding only; this module does no I/O.
//!
//! The layouts are specified in `docs/spec/filestorage-format.md` (§2–§4)
//! and mirrored here: every integer is unsigned big-endian.
//!
//! ```text
//! file        = magic(4) transaction*
//! transaction = tid(8) tlen(8) status(1) ulen(2) dlen(2) elen(2)
//!               user(ulen) description(dlen) extension(elen)
//!               data_record*                         -- fill exactly up to tpos + tlen
//!               tlen(8)                               -- redundant copy
//! data_record = oid(8) serial(8) prev(8) tloc(8) vlen(2) plen(8)
//!               data(plen)  |  back(8) when plen == 0
//! ```

use crate::ids::{Oid, Tid};

/// `FS30`: Python-3 ZODB. The only magic we write.
pub const MAGIC: &[u8; 4] = b"FS30";
/// `FS21`: Python-2 ZODB; same layout, Python-2 pickles. Read-only.
pub const MAGIC_PY2: &[u8; 4] = b"FS21";

// Transaction header offsets, each built from the previous.
pub const TXN_TID: usize = 0;
pub const TXN_TLEN: usize = TXN_TID + 8;
pub const TXN_STATUS: usize = TXN_TLEN + 8;
pub const TXN_ULEN: usize = TXN_STATUS + 1;
pub const TXN_DLEN: usize = TXN_ULEN + 2;
pub const TXN_ELEN: usize = TXN_DLEN + 2;
pub const TXN_HEADER_SIZE: usize = TXN_ELEN + 2;
const _: () = assert!(TXN_HEADER_SIZE == 23);

// Data record header offsets.
pub const DATA_OID: usize = 0;
pub const DATA_SERIAL: usize = DATA_OID + 8;
pub const DATA_PREV: usize = DATA_SERIAL + 8;
pub const DATA_TLOC: usize = DATA_PREV + 8;
pub const DATA_VLEN: usize = DATA_TLOC + 8;
pub const DATA_PLEN: usize = DATA_VLEN + 2;
pub const DATA_HEADER_SIZE: usize = DATA_PLEN + 8;
const _: () = assert!(DATA_HEADER_SIZE == 42);

/// Size of a backpointer (written instead of data when `plen == 0`), and of
/// the redundant transaction length.
pub const POS_SIZE: usize = 8;

/// The byte at `tpos + TXN_STATUS` while a transaction is voted but not
/// finished.
pub const STATUS_CHECKPOINT: u8 = b'c';
pub const STATUS_COMMITTED: u8 = b' ';
pub const STATUS_PACKED: u8 = b'p';
pub const STATUS_UNDONE: u8 = b'u';

fn be64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// A transaction header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnHeader {
    pub tid: Tid,
    /// Bytes from the header's start to the end of its last data record.
    pub tlen: u64,
    pub status: u8,
    pub ulen: u16,
    pub dlen: u16,
    pub elen: u16,
}

impl TxnHeader {
    pub fn decode(b: &[u8; TXN_HEADER_SIZE]) -> TxnHeader {
        TxnHeader {
            tid: Tid(be64(b, TXN_TID)),
            tlen: be64(b, TXN_TLEN),
            status: b[TXN_STATUS],
            ulen: be16(b, TXN_ULEN),
            dlen: be16(b, TXN_DLEN),
            elen: be16(b, TXN_ELEN),
        }
    }

    pub fn encode(&self) -> [u8; TXN_HEADER_SIZE] {
        let mut b = [0u8; TXN_HEADER_SIZE];
        b[TXN_TID..TXN_TLEN].copy_from_slice(&self.tid.to_bytes());
        b[TXN_TLEN..TXN_STATUS].copy_from_slice(&self.tlen.to_be_bytes());
        b[TXN_STATUS] = self.status;
        b[TXN_ULEN..TXN_DLEN].copy_from_slice(&self.ulen.to_be_bytes());
        b[TXN_DLEN..TXN_ELEN].copy_from_slice(&self.dlen.to_be_bytes());
        b[TXN_ELEN..TXN_HEADER_SIZE].copy_from_slice(&self.elen.to_be_bytes());
        b
    }

    /// Header plus user, description and extension.
    pub fn header_len(&self) -> u64 {
        TXN_HEADER_SIZE as u64 + u64::from(self.ulen) + u64::from(self.dlen) + u64::from(self.elen)
    }

    /// Where the next transaction starts, given this one's position.
    pub fn next_pos(&self, tpos: u64) -> u64 {
        tpos.saturating_add(self.tlen)
            .saturating_add(POS_SIZE as u64)
    }
}

/// A data record header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataHeader {
    pub oid: Oid,
    pub serial: Tid,
    /// Position of the previous record of this oid, 0 if none.
    pub prev: u64,
    /// Position of the enclosing transaction.
    pub tloc: u64,
    /// Legacy version length; must be 0.
    pub vlen: u16,
    /// Length of the record; 0 means a backpointer follows instead.
    pub plen: u64,
}

impl DataHeader {
    pub fn decode(b: &[u8; DATA_HEADER_SIZE]) -> DataHeader {
        DataHeader {
            oid: Oid(be64(b, DATA_OID)),
            serial: Tid(be64(b, DATA_SERIAL)),
            prev: be64(b, DATA_PREV),
            tloc: be64(b, DATA_TLOC),
            vlen: be16(b, DATA_VLEN),
            plen: be64(b, DATA_PLEN),
        }
    }

    pub fn encode(&self) -> [u8; DATA_HEADER_SIZE] {
        let mut b = [0u8; DATA_HEADER_SIZE];
        b[DATA_OID..DATA_SERIAL].copy_from_slice(&self.oid.to_bytes());
        b[DATA_SERIAL..DATA_PREV].copy_from_slice(&self.serial.to_bytes());
        b[DATA_PREV..DATA_TLOC].copy_from_slice(&self.prev.to_be_bytes());
        b[DATA_TLOC..DATA_VLEN].copy_from_slice(&self.tloc.to_be_bytes());
        b[DATA_VLEN..DATA_PLEN].copy_from_slice(&self.vlen.to_be_bytes());
        b[DATA_PLEN..DATA_HEADER_SIZE].copy_from_slice(&self.plen.to_be_bytes());
        b
    }

    /// Bytes the whole record occupies.
    pub fn record_len(&self) -> u64 {
        // Saturating: a damaged header may claim any length, and callers
        // compare the result with the transaction's end.
        (DATA_HEADER_SIZE as u64).saturating_add(if self.plen > 0 {
            self.plen
        } else {
            POS_SIZE as u64
        })
    }
}

/// What a data record holds after its header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload<'a> {
    Data(&'a [u8]),
    /// The position of an earlier record whose data this revision reuses;
    /// 0 means the object does not exist as of this revision.
    Back(u64),
}

/// Appends one data record to a transaction being built.
pub fn encode_data_record(out: &mut Vec<u8>, header: &DataHeader, payload: &Payload<'_>) {
    debug_assert_eq!(header.vlen, 0);
    out.extend_from_slice(&header.encode());
    match payload {
        Payload::Data(d) => {
            debug_assert_eq!(header.plen, d.len() as u64);
            out.extend_from_slice(d);
        }
        Payload::Back(back) => {
            debug_assert_eq!(header.plen, 0);
            out.extend_from_slice(&back.to_be_bytes());
        }
    }
}

/// Builds a whole transaction record in memory: header, metadata, records
/// added with [`TxnBuilder::push`], and the redundant length.
#[derive(Debug)]
pub struct TxnBuilder {
    buf: Vec<u8>,
    tpos: u64,
}

impl TxnBuilder {
    /// Starts a transaction at file position `tpos`. The metadata lengths
    /// must each fit in 16 bits (checked by the caller against
    /// `limits::TXN_META_FIELD_SIZE_MAX`).
    pub fn new(
        tpos: u64,
        tid: Tid,
        status: u8,
        user: &[u8],
        description: &[u8],
        extension: &[u8],
    ) -> TxnBuilder {
        let header = TxnHeader {
            tid,
            tlen: 0,
            status,
            ulen: user.len() as u16,
            dlen: description.len() as u16,
            elen: extension.len() as u16,
        };
        assert!(
            usize::from(header.ulen) == user.len()
                && usize::from(header.dlen) == description.len()
                && usize::from(header.elen) == extension.len(),
            "transaction metadata longer than 65535 bytes reached the encoder"
        );
        let mut buf = Vec::with_capacity(4096);
        buf.extend_from_slice(&header.encode());
        buf.extend_from_slice(user);
        buf.extend_from_slice(description);
        buf.extend_from_slice(extension);
        TxnBuilder { buf, tpos }
    }

    /// Makes room for `records` more bytes of records (and the trailing length), so
    /// that a large transaction is not copied as its buffer grows.
    pub fn reserve(&mut self, records: usize) {
        self.buf.reserve(records + 8);
    }

    /// The file position the next pushed record will have.
    pub fn next_record_pos(&self) -> u64 {
        self.tpos + self.buf.len() as u64
    }

    /// Appends a record; returns its file position.
    pub fn push(&mut self, oid: Oid, serial: Tid, prev: u64, payload: &Payload<'_>) -> u64 {
        let pos = self.next_record_pos();
        let plen = match payload {
            Payload::Data(d) => d.len() as u64,
            Payload::Back(_) => 0,
        };
        let header = DataHeader {
            oid,
            serial,
            prev,
            tloc: self.tpos,
            vlen: 0,
            plen,
        };
        encode_data_record(&mut self.buf, &header, payload);
        pos
    }

    /// Patches the length, appends the redundant copy, and returns the
    /// bytes to write at `tpos`.
    pub fn finish(mut self) -> Vec<u8> {
        let tlen = self.buf.len() as u64;
        self.buf[TXN_TLEN..TXN_STATUS].copy_from_slice(&tlen.to_be_bytes());
        self.buf.extend_from_slice(&tlen.to_be_bytes());
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn txn_header_observed_in_the_fixture() {
        // T2 of unpacked.fs at 166 (filestorage-format.md §3).
        let bytes: [u8; 23] = [
            0x04, 0x05, 0xed, 0x59, 0x18, 0x88, 0x88, 0x88, 0, 0, 0, 0, 0, 0, 0x06, 0x0e, 0x20,
            0x00, 0x05, 0x00, 0x19, 0x00, 0x2b,
        ];
        let h = TxnHeader::decode(&bytes);
        assert_eq!(h.tid, Tid(0x0405_ed59_1888_8888));
        assert_eq!(h.tlen, 1550);
        assert_eq!(h.status, b' ');
        assert_eq!((h.ulen, h.dlen, h.elen), (5, 25, 43));
        assert_eq!(h.encode(), bytes);
    }

    #[test]
    fn data_header_observed_in_the_fixture() {
        // The root record of T2 at 262.
        let mut bytes = [0u8; 42];
        bytes[8..16].copy_from_slice(&[0x04, 0x05, 0xed, 0x59, 0x18, 0x88, 0x88, 0x88]);
        bytes[23] = 0x34;
        bytes[31] = 0xa6;
        bytes[41] = 0xc6;
        let h = DataHeader::decode(&bytes);
        assert_eq!(h.oid, Oid(0));
        assert_eq!((h.prev, h.tloc, h.vlen, h.plen), (52, 166, 0, 198));
        assert_eq!(h.encode(), bytes);
        assert_eq!(h.record_len(), 42 + 198);
    }

    #[test]
    fn a_damaged_record_length_saturates_instead_of_overflowing() {
        let h = DataHeader {
            oid: Oid(1),
            serial: Tid(1),
            prev: 0,
            tloc: 4,
            vlen: 0,
            plen: u64::MAX - 1,
        };
        assert_eq!(h.record_len(), u64::MAX);
    }

    #[test]
    fn builder_lays_out_an_empty_transaction() {
        let b = TxnBuilder::new(4, Tid(7), b' ', b"u", b"empty txn", b"");
        let bytes = b.finish();
        // tlen = headerlen = 33 for user `u`, description `empty txn`.
        assert_eq!(bytes.len(), 33 + 8);
        assert_eq!(&bytes[8..16], &33u64.to_be_bytes());
        assert_eq!(&bytes[33..], &33u64.to_be_bytes());
    }
}
