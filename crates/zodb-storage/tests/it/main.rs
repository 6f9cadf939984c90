//! Integration tests of the storage engines, one module per area.

mod fixtures;
mod recovery;
mod filestorage;
