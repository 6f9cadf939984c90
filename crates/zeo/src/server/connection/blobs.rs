//! Blobs on the wire: a client uploads a blob file (`storeBlobStart`, `storeBlobChunk`…,
//! `storeBlobEnd`) or, sharing the server's blob directory, names the file it put there
//! (`storeBlobShared`); `sendBlob` streams a revision's file back as `receiveBlob…`
//! callbacks before its reply, for a client that keeps a blob cache.
//!
//! No whole file is ever in memory: an upload goes to a file in the storage's blob
//! `tmp/` chunk by chunk (at most `BLOB_UPLOAD_BYTES_MAX`), and `sendBlob` reads the
//! next chunk only once the connection's queued replies are under
//! `SEND_BLOB_QUEUED_BYTES_MAX`.  What cannot be done (a storage without blobs, a bad
//! shared file name, a failed write) fails the transaction, whose vote then says why:
//! a one-way call has no reply to carry the error.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Arc;

use zodb_pickle::Value;
use zodb_storage::{Oid, StorageError, Tid};

use super::{Connection, Step, close};
use crate::limits;
use crate::wire::{Callback, Message};

/// A blob file being uploaded.
#[derive(Debug)]
pub(super) enum Upload {
    /// Written to `path`; `bytes` so far.
    Writing {
        file: std::fs::File,
        path: PathBuf,
        bytes: u64,
    },
    /// Refused (no blob directory, too large, a write failed): its chunks are read and
    /// dropped, and its `storeBlobEnd` fails the transaction with this reason.
    Refused(String),
}

impl Upload {
    /// The uploaded file, synced, handed over to the caller; or why there is none.
    fn finish(mut self) -> Result<PathBuf, String> {
        match &mut self {
            Upload::Writing { file, path, .. } => {
                file.sync_all()
                    .map_err(|e| format!("cannot write a blob upload: {e}"))?;
                Ok(std::mem::take(path))
            }
            Upload::Refused(why) => Err(why.clone()),
        }
    }
}

impl Drop for Upload {
    /// An upload that is not handed over (refused, or its connection gone) is removed.
    fn drop(&mut self) {
        if let Upload::Writing { path, .. } = self
            && !path.as_os_str().is_empty()
        {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl Connection {
    pub(super) fn store_blob_start(&self) -> Step {
        let entry = self.entry()?;
        let upload = match entry.storage.blobs() {
            None => Upload::Refused("this server's storage has no blob directory".into()),
            Some(blobs) => match tempfile::Builder::new()
                .prefix("upload-")
                .tempfile_in(blobs.tmp_dir())
                .and_then(|f| f.keep().map_err(|e| e.error))
            {
                Ok((file, path)) => Upload::Writing {
                    file,
                    path,
                    bytes: 0,
                },
                Err(e) => Upload::Refused(format!("cannot take a blob upload: {e}")),
            },
        };
        let mut s = self.state.lock();
        if s.upload.is_some() {
            return Err(close("storeBlobStart while another upload is open"));
        }
        s.upload = Some(upload);
        Ok(())
    }

    pub(super) fn store_blob_chunk(&self, chunk: &[u8]) -> Step {
        let mut s = self.state.lock();
        let Some(upload) = s.upload.as_mut() else {
            return Err(close("storeBlobChunk without storeBlobStart"));
        };
        if let Upload::Writing { file, bytes, .. } = upload {
            *bytes += chunk.len() as u64;
            let refused = if *bytes > limits::BLOB_UPLOAD_BYTES_MAX {
                Some(format!(
                    "blob upload over {} bytes (the server's limit)",
                    limits::BLOB_UPLOAD_BYTES_MAX
                ))
            } else {
                file.write_all(chunk)
                    .err()
                    .map(|e| format!("cannot write a blob upload: {e}"))
            };
            if let Some(why) = refused {
                // Dropping the upload being written removes its file.
                *upload = Upload::Refused(why);
            }
        }
        Ok(())
    }

    pub(super) fn store_blob_end(&self, oid: Oid, serial: Tid, data: Vec<u8>, txn: &Value) -> Step {
        let upload = self
            .state
            .lock()
            .upload
            .take()
            .ok_or_else(|| close("storeBlobEnd without storeBlobStart"))?;
        // The buffer owns the file from here.
        self.buffer_blob(oid, serial, data, txn, upload.finish())
    }

    pub(super) fn store_blob_shared(
        &self,
        oid: Oid,
        serial: Tid,
        data: Vec<u8>,
        filename: &str,
        txn: &Value,
    ) -> Step {
        let entry = self.entry()?;
        // As Python's server: a bare name of a file the client made in the object's
        // directory (`….tmp`, or `….tmp-` when renamed once more); anything else is an
        // attempt to make the server take another file.
        let named_right = !filename.contains('/')
            && (filename.ends_with(".tmp")
                || filename
                    .char_indices()
                    .last()
                    .is_some_and(|(i, _)| filename[..i].ends_with(".tmp")));
        if !named_right {
            tracing::error!(peer = %self.outbox.peer, filename, "storeBlobShared with a bad file name; closing");
            return Err(close(format!(
                "storeBlobShared with a bad file name {filename:?}"
            )));
        }
        let file = match entry.storage.blobs() {
            Some(blobs) => Ok(blobs.oid_dir(oid).join(filename)),
            None => Err("this server's storage has no blob directory".to_string()),
        };
        self.buffer_blob(oid, serial, data, txn, file)
    }

    /// Streams the file of `oid`'s revision `serial` as callbacks, then replies `None`.
    pub(super) fn send_blob(&self, msgid: Value, oid: Oid, serial: Tid) -> Step {
        let entry = self.entry()?;
        let path = match entry.storage.load_blob(oid, serial) {
            Ok(p) => p,
            Err(e) => {
                self.reply_error(msgid, &e);
                return Ok(());
            }
        };
        let outbox = Arc::clone(&self.outbox);
        tokio::spawn(async move {
            let fail = |e: std::io::Error| {
                let e = StorageError::io(format!("sending blob {}", path.display()), e);
                let (class, payload) = crate::server::errors::to_remote(&e);
                Message::error(msgid.clone(), class, payload)
            };
            // Reads of a chunk from the page cache, in line as loads are.
            let mut file = match std::fs::File::open(&path) {
                Ok(f) => f,
                Err(e) => return outbox.send(&fail(e)),
            };
            outbox.send(&Callback::ReceiveBlobStart { oid, serial }.into_message());
            let mut chunk = vec![0; limits::BLOB_CHUNK_BYTES];
            loop {
                let n = match file.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) => return outbox.send(&fail(e)),
                };
                if !outbox
                    .wait_for_room(limits::SEND_BLOB_QUEUED_BYTES_MAX)
                    .await
                {
                    return; // the connection is closing
                }
                outbox.send(
                    &Callback::ReceiveBlobChunk {
                        oid,
                        serial,
                        chunk: chunk[..n].to_vec(),
                    }
                    .into_message(),
                );
            }
            outbox.send(&Callback::ReceiveBlobStop { oid, serial }.into_message());
            outbox.send(&Message::reply(msgid, Value::None));
        });
        Ok(())
    }
}
