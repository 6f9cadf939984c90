//! Blobs in RelStorage 4.3's way: each blob revision is one PostgreSQL large
//! object, named by a `blob_chunk` row `(zoid, tid, chunk_num = 0, chunk =
//! its oid)`. (Databases written by RelStorage 2 may hold several chunks
//! per revision, numbered from 0: a download joins them in order.)
//!
//! The vote uploads each blob of the transaction into a new large object
//! (`lo_create`, then `lo_put` in pieces of [`BLOB_PIECE_BYTES`]) and notes
//! it in the session's `bbru_temp_blob`; the finish's move writes the
//! `blob_chunk` rows with the tid. Large objects are transactional, so a
//! vote rolled back leaves nothing behind. Deleting a `blob_chunk` row (a
//! pack removes its `object_state` row, which cascades) unlinks the large
//! object once no other row names it: the `blob_chunk_delete` trigger,
//! RelStorage's, which `schema::init` creates when missing.
//!
//! The storage's blob directory is a cache of revisions, in ZODB's layout:
//! a committed upload is moved there, and a revision asked for that is not
//! there is downloaded (`lo_get` in pieces) into `tmp/` and renamed into
//! place, so a reader never sees a partial file.

use std::path::{Path, PathBuf};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use zodb_storage::blob::BlobDir;
use zodb_storage::{Oid, Tid};

use crate::error::{PgError, PgResult};
use crate::limits::{BLOB_PIECE_BYTES, PACK_BATCH_OBJECTS};
use crate::pool::PgConn;
use crate::storage::{id, sql};

const CREATE: &str = "SELECT lo_create(0)";

const PUT: &str = "SELECT lo_put($1, $2, $3)";

const STAGE: &str = "INSERT INTO bbru_temp_blob (zoid, chunk) VALUES ($1, $2)
    ON CONFLICT (zoid) DO UPDATE SET chunk = excluded.chunk";

const CHUNKS: &str = "SELECT chunk FROM blob_chunk WHERE zoid = $1 AND tid = $2 ORDER BY chunk_num";

const GET: &str = "SELECT lo_get($1, $2, $3)";

/// Of the revisions given, those the database no longer has.
const GONE: &str = "SELECT u.z, u.t FROM unnest($1::bigint[], $2::bigint[]) AS u(z, t)
    LEFT JOIN object_state o ON o.zoid = u.z AND o.tid = u.t WHERE o.zoid IS NULL";

/// Uploads `file` into a new large object in the vote's SQL transaction and
/// stages it as `oid`'s blob.
pub(crate) async fn upload(conn: &mut PgConn, oid: Oid, file: &Path) -> PgResult<()> {
    let st = conn.prepared(CREATE).await?;
    let loid: u32 = conn
        .client
        .query_one(&st, &[])
        .await
        .map_err(PgError::query("creating a blob's large object"))?
        .get(0);
    let mut f = tokio::fs::File::open(file)
        .await
        .map_err(PgError::blob_file("opening a blob to upload"))?;
    let put = conn.prepared(PUT).await?;
    let mut piece = vec![0u8; BLOB_PIECE_BYTES];
    let mut offset: i64 = 0;
    loop {
        let n = read_full(&mut f, &mut piece)
            .await
            .map_err(PgError::blob_file("reading a blob to upload"))?;
        if n == 0 {
            break;
        }
        conn.client
            .execute(&put, &[&loid, &offset, &&piece[..n]])
            .await
            .map_err(PgError::query("writing a blob's large object"))?;
        offset += n as i64;
    }
    let st = conn.prepared(STAGE).await?;
    conn.client
        .execute(&st, &[&sql(oid.0), &loid])
        .await
        .map_err(PgError::query("staging a blob"))?;
    Ok(())
}

/// Reads until `buf` is full or the file ends.
async fn read_full(f: &mut tokio::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        let n = f.read(&mut buf[filled..]).await?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    Ok(filled)
}

/// Downloads revision `tid` of `oid`'s blob into the cache `dir` and returns
/// its path; `None` when the database has no blob for that revision.
pub(crate) async fn download(
    conn: &mut PgConn,
    dir: &BlobDir,
    oid: Oid,
    tid: Tid,
) -> PgResult<Option<PathBuf>> {
    let st = conn.prepared(CHUNKS).await?;
    let chunks: Vec<u32> = conn
        .client
        .query(&st, &[&sql(oid.0), &sql(tid.0)])
        .await
        .map_err(PgError::query("finding a blob's large objects"))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if chunks.is_empty() {
        return Ok(None);
    }
    let tmp = tempfile::Builder::new()
        .prefix("download-")
        .tempfile_in(dir.tmp_dir())
        .map_err(PgError::blob_file("making a file for a downloaded blob"))?
        .into_temp_path();
    let mut out = tokio::fs::File::create(&tmp)
        .await
        .map_err(PgError::blob_file("writing a downloaded blob"))?;
    let get = conn.prepared(GET).await?;
    let piece = BLOB_PIECE_BYTES as i32;
    for loid in chunks {
        let mut offset: i64 = 0;
        loop {
            let bytes: Vec<u8> = conn
                .client
                .query_one(&get, &[&loid, &offset, &piece])
                .await
                .map_err(PgError::query("reading a blob's large object"))?
                .get(0);
            out.write_all(&bytes)
                .await
                .map_err(PgError::blob_file("writing a downloaded blob"))?;
            if bytes.len() < BLOB_PIECE_BYTES {
                break;
            }
            offset += bytes.len() as i64;
        }
    }
    out.flush()
        .await
        .map_err(PgError::blob_file("writing a downloaded blob"))?;
    drop(out);
    let staged = tmp.keep().map_err(|e| PgError::BlobFile {
        context: "keeping a downloaded blob",
        source: e.error,
    })?;
    match dir.commit(&staged, oid, tid) {
        Ok(path) => Ok(Some(path)),
        Err(e) => {
            BlobDir::discard(&staged);
            Err(PgError::BlobFile {
                context: "moving a downloaded blob into the blob cache",
                source: e,
            })
        }
    }
}

/// After a pack: removes from the cache `dir` the files of revisions the
/// database no longer has (a client sharing the directory, or reading it
/// through the server, then finds them gone, as on a FileStorage). Asked in
/// batches of [`PACK_BATCH_OBJECTS`] revisions.
pub(crate) async fn prune_cache(conn: &mut PgConn, dir: &BlobDir) -> PgResult<()> {
    let cached = dir
        .revisions()
        .map_err(PgError::blob_file("listing the blob cache"))?;
    let st = conn.prepared(GONE).await?;
    for batch in cached.chunks(PACK_BATCH_OBJECTS as usize) {
        let z: Vec<i64> = batch.iter().map(|(o, _, _)| sql(o.0)).collect();
        let t: Vec<i64> = batch.iter().map(|(_, t, _)| sql(t.0)).collect();
        let rows = conn
            .client
            .query(&st, &[&z, &t])
            .await
            .map_err(PgError::query("finding packed blob revisions"))?;
        for row in rows {
            let (oid, tid) = (Oid(id(row.get(0))), Tid(id(row.get(1))));
            if let Err(e) = dir.retire(&dir.path(oid, tid), false) {
                tracing::warn!(%oid, %tid, "removing a packed blob from the cache: {e}");
            }
        }
    }
    Ok(())
}
