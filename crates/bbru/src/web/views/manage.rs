//! The folder management view (`@@contents`): listing with actions.

use zodb::Transaction;

use crate::web::{AppError, Ctx, Reply};

pub fn contents(_ctx: &Ctx<'_>, _tx: &Transaction<'_>) -> Result<Reply, AppError> {
    Err(AppError::NotFound)
}

pub fn contents_action(_ctx: &Ctx<'_>, _tx: &Transaction<'_>) -> Result<Reply, AppError> {
    Err(AppError::NotFound)
}
