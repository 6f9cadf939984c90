//! An object's history (`@@history`: past versions, view, revert) and the site-wide undo
//! view (`/@@undo`).

use zodb::Transaction;

use crate::web::{AppError, Ctx, Reply};

pub fn history(_ctx: &Ctx<'_>, _tx: &Transaction<'_>) -> Result<Reply, AppError> {
    Err(AppError::NotFound)
}

pub fn revert(_ctx: &Ctx<'_>, _tx: &Transaction<'_>) -> Result<Reply, AppError> {
    Err(AppError::NotFound)
}

pub fn undo_log(_ctx: &Ctx<'_>, _tx: &Transaction<'_>) -> Result<Reply, AppError> {
    Err(AppError::NotFound)
}

pub fn undo(_ctx: &Ctx<'_>, _tx: &Transaction<'_>) -> Result<Reply, AppError> {
    Err(AppError::NotFound)
}
