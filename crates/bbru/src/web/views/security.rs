//! The security view (`@@security`): local role grants of an object.

use zodb::Transaction;

use crate::web::{AppError, Ctx, Reply};

pub fn form(_ctx: &Ctx<'_>, _tx: &Transaction<'_>) -> Result<Reply, AppError> {
    Err(AppError::NotFound)
}

pub fn change(_ctx: &Ctx<'_>, _tx: &Transaction<'_>) -> Result<Reply, AppError> {
    Err(AppError::NotFound)
}
