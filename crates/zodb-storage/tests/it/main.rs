//! Integration tests of the storage engines, one module per area.

mod blobs;
mod conformance_demo;
mod conformance_file;
mod conformance_memory;
mod copy;
mod filestorage;
mod fixtures;
mod listeners;
mod recovery;
