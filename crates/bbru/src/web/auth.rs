//! Who is asking: credentials from HTTP Basic or the session cookie, checked against the
//! bootstrap manager and the users stored in the site.

use axum::http::{HeaderMap, header};
use base64::Engine;
use zodb::{PRef, Transaction};

use crate::model::Site;
use crate::security::auth;
use crate::security::{Principal, password};

use super::{App, AppError};

/// The value of the request cookie `name`.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// How the request authenticated.
pub(super) enum Credentials {
    None,
    Basic(String, String),
    Session(auth::Session),
}

impl App {
    pub(super) fn credentials(&self, headers: &HeaderMap) -> Result<Credentials, AppError> {
        if let Some(value) = headers.get(header::AUTHORIZATION) {
            let value = value.to_str().map_err(|_| AppError::Unauthorized)?;
            let Some(encoded) = value.strip_prefix("Basic ") else {
                return Err(AppError::Unauthorized);
            };
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .map_err(|_| AppError::Unauthorized)?;
            let decoded = String::from_utf8(decoded).map_err(|_| AppError::Unauthorized)?;
            let (login, password) = decoded.split_once(':').ok_or(AppError::Unauthorized)?;
            return Ok(Credentials::Basic(login.to_owned(), password.to_owned()));
        }
        if let Some(value) = cookie(headers, auth::SESSION_COOKIE)
            && let Some(session) = auth::verify_session(&self.secret, value)
        {
            return Ok(Credentials::Session(session));
        }
        Ok(Credentials::None)
    }

    /// The principal of a login and password, or `None` when they do not match.
    pub fn check_password(
        &self,
        tx: &Transaction<'_>,
        site: PRef<Site>,
        login: &str,
        pass: &str,
    ) -> Result<Option<Principal>, AppError> {
        if let Some((boot_login, hash)) = &self.bootstrap
            && boot_login == login
        {
            let ok = password::verify(pass, hash) && self.bootstrap_usable(tx, site, login)?;
            return Ok(ok.then(|| Principal::Bootstrap {
                login: login.to_owned(),
            }));
        }
        let users = tx.get(site)?.users;
        let Some(user_ref) = users.get(tx, &login.to_owned())? else {
            // Spend the time a real check takes, so a missing login is not revealed.
            let _ = password::verify(pass, &password::hash("timing"));
            return Ok(None);
        };
        let user = tx.get(user_ref)?;
        if !password::verify(pass, &user.password_hash) {
            return Ok(None);
        }
        Ok(Some(Principal::User {
            login: user.login.clone(),
            groups: user.groups.clone(),
        }))
    }

    /// The principal a session names, if the session is still valid for it.
    pub(super) fn session_principal(
        &self,
        tx: &Transaction<'_>,
        site: PRef<Site>,
        session: &auth::Session,
    ) -> Result<Principal, AppError> {
        if session.bootstrap {
            let current = tx.get(site)?.bootstrap_generation == session.generation;
            return Ok(
                if current && self.bootstrap_usable(tx, site, &session.login)? {
                    Principal::Bootstrap {
                        login: session.login.clone(),
                    }
                } else {
                    Principal::Anonymous
                },
            );
        }
        let users = tx.get(site)?.users;
        let Some(user_ref) = users.get(tx, &session.login)? else {
            return Ok(Principal::Anonymous);
        };
        let user = tx.get(user_ref)?;
        if user.session_generation != session.generation {
            return Ok(Principal::Anonymous);
        }
        Ok(Principal::User {
            login: user.login.clone(),
            groups: user.groups.clone(),
        })
    }
}
