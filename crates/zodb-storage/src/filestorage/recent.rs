//! [`RecentTxns`]: where the newest transactions this storage wrote begin, and their tids.
//!
//! A data record's serial is the tid of the transaction that holds it, and transactions
//! lie back to back in the file.  So the serial of any record in one of these
//! transactions follows from its position alone: the tid of the last transaction that
//! begins at or before it.  A store checks the serial of the object's current record;
//! objects changed lately (the ones clients change again) are found here, without
//! reading the record's header from the file.  Older records are read as before.
//!
//! Only transactions written by this process are kept (their records are exactly what
//! it wrote), in one contiguous run ending at the committed end, at most
//! [`limits::RECENT_TRANSACTIONS_MAX`] of them.  A pack replaces the snapshot that holds
//! this, and with it the table.

use std::collections::VecDeque;

use crate::ids::Tid;
use crate::limits;

#[derive(Debug, Default)]
pub(super) struct RecentTxns {
    /// (position, tid) of each transaction, in file order.
    starts: VecDeque<(u64, Tid)>,
    /// Where the last one ends.
    end: u64,
}

impl RecentTxns {
    /// Adds the transaction written at `tpos..end` with `tid`, the next one in the file.
    pub(super) fn push(&mut self, tpos: u64, end: u64, tid: Tid) {
        if tpos != self.end {
            // Not contiguous with what is kept (never the case after a write of ours):
            // start over, rather than answer for bytes in between.
            self.starts.clear();
        }
        if self.starts.len() == limits::RECENT_TRANSACTIONS_MAX {
            self.starts.pop_front();
        }
        self.starts.push_back((tpos, tid));
        self.end = end;
    }

    /// The serial of the record at `pos`, if it lies in a transaction kept here.
    pub(super) fn serial_at(&self, pos: u64) -> Option<Tid> {
        let (first, _) = self.starts.front()?;
        if pos < *first || pos >= self.end {
            return None;
        }
        let after = self.starts.partition_point(|(start, _)| *start <= pos);
        self.starts.get(after.checked_sub(1)?).map(|(_, tid)| *tid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_position_gets_the_tid_of_the_transaction_holding_it() {
        let mut r = RecentTxns::default();
        assert_eq!(r.serial_at(4), None);
        r.push(4, 100, Tid(1));
        r.push(100, 250, Tid(2));
        assert_eq!(r.serial_at(3), None);
        assert_eq!(r.serial_at(4), Some(Tid(1)));
        assert_eq!(r.serial_at(99), Some(Tid(1)));
        assert_eq!(r.serial_at(100), Some(Tid(2)));
        assert_eq!(r.serial_at(249), Some(Tid(2)));
        assert_eq!(r.serial_at(250), None);
        // A gap (never made by a write of ours): nothing before it is answered for.
        r.push(300, 400, Tid(3));
        assert_eq!(r.serial_at(150), None);
        assert_eq!(r.serial_at(350), Some(Tid(3)));
    }

    #[test]
    fn the_oldest_go_past_the_bound() {
        let mut r = RecentTxns::default();
        let n = limits::RECENT_TRANSACTIONS_MAX as u64 + 10;
        for i in 0..n {
            r.push(i * 10, i * 10 + 10, Tid(i + 1));
        }
        assert_eq!(r.starts.len(), limits::RECENT_TRANSACTIONS_MAX);
        assert_eq!(r.serial_at(0), None);
        assert_eq!(r.serial_at(95), None, "the tenth went too");
        assert_eq!(r.serial_at(105), Some(Tid(11)));
        assert_eq!(r.serial_at(n * 10 - 1), Some(Tid(n)));
    }
}
