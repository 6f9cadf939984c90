//! User and group management (`/@@users`).

use zodb::Transaction;

use crate::web::{AppError, Ctx, Reply};

pub fn list(_ctx: &Ctx<'_>, _tx: &Transaction<'_>) -> Result<Reply, AppError> {
    Err(AppError::NotFound)
}

pub fn change(_ctx: &Ctx<'_>, _tx: &Transaction<'_>) -> Result<Reply, AppError> {
    Err(AppError::NotFound)
}
