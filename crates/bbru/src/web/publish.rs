//! The publishing pipeline: the axum handler for every path.  It reads the body, then on
//! the blocking pool runs one transaction: authenticate, traverse, find the view, check
//! its permission and the CSRF token, run it, commit with the principal as the user.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use zodb::{PRef, Transaction, TransactionManager};

use crate::model::{Content, ContentRef, Site};
use crate::security::auth;
use crate::security::{self, Grants, Permission, Principal};

use super::auth::Credentials;
use super::error::render_error;
use super::input::read_input;
use super::reply::render_reply;
use super::{App, AppError, Input, Peer, Reply, cookie, url_of, views};

/// One step of the traversal: the name in the URL and the object found.
#[derive(Debug, Clone)]
pub struct Step {
    pub name: String,
    pub content: Content,
}

/// The request, as the views see it.
pub struct Ctx<'a> {
    pub app: &'a App,
    pub method: Method,
    pub headers: &'a HeaderMap,
    pub query: Vec<(String, String)>,
    pub input: &'a Input,
    pub principal: Principal,
    /// The site root folder first, the object addressed last.
    pub path: Vec<Step>,
    pub view: String,
    /// The CSRF token forms must carry.
    pub csrf: String,
    pub wants_json: bool,
    pub site: PRef<Site>,
    /// The client's address (from `X-Forwarded-For` only when the peer is a trusted proxy).
    pub client: String,
}

impl std::fmt::Debug for Ctx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("method", &self.method)
            .field("view", &self.view)
            .finish_non_exhaustive()
    }
}

impl Ctx<'_> {
    /// The object addressed.
    pub fn target(&self) -> &Content {
        &self
            .path
            .last()
            .expect("the path holds at least the root")
            .content
    }

    /// The URL path of the object addressed ("/" for the root).
    pub fn url(&self) -> String {
        url_of(self.path.iter().skip(1).map(|s| s.name.as_str()))
    }

    /// The path of the object as written in transaction notes ("/docs/install").
    pub fn location(&self) -> String {
        self.url()
    }

    pub fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The grants along the containment path (root first).
    pub fn grants_path(&self) -> Vec<&Grants> {
        self.path.iter().map(|s| &s.content.meta().grants).collect()
    }

    /// Whether the principal has `permission` on the object addressed.
    pub fn allowed(&self, permission: Permission) -> bool {
        security::allowed(&self.principal, &self.grants_path(), permission)
    }

    /// Whether the principal has `permission` on the folder that holds the object
    /// addressed (never for the site root, which no folder holds).  Removing an item
    /// from a folder (delete, cut) is decided there, as in Zope: rights granted on the
    /// item alone do not reach its container.
    pub fn allowed_on_container(&self, permission: Permission) -> bool {
        let mut path = self.grants_path();
        path.pop();
        !path.is_empty() && security::allowed(&self.principal, &path, permission)
    }

    /// Refusal of an action: a visitor is asked to log in, a user told it is not allowed.
    pub fn denied(&self) -> AppError {
        if self.principal.is_authenticated() {
            AppError::Forbidden
        } else {
            AppError::Unauthorized
        }
    }

    /// Whether the principal has `permission` on the item `child` of the addressed folder.
    pub fn allowed_on(&self, child: &Content, permission: Permission) -> bool {
        let mut path = self.grants_path();
        path.push(&child.meta().grants);
        security::allowed(&self.principal, &path, permission)
    }

    /// Marks the transaction with who does what where (the audit trail).
    pub fn note(&self, tx: &Transaction<'_>, what: &str) {
        tx.set_user(self.principal.audit_name());
        tx.note(what);
    }
}

/// Splits a request path into item names and the view name (`""` for the default view).
fn split_path(path: &str) -> Result<(Vec<String>, String), AppError> {
    let mut names = Vec::new();
    let mut view = String::new();
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    for (i, segment) in segments.iter().enumerate() {
        let decoded = percent_encoding::percent_decode_str(segment)
            .decode_utf8()
            .map_err(|_| AppError::BadRequest("path is not UTF-8".into()))?
            .into_owned();
        if let Some(v) = decoded.strip_prefix("@@") {
            if i + 1 != segments.len() {
                return Err(AppError::NotFound);
            }
            view = v.to_owned();
        } else {
            names.push(decoded);
        }
    }
    Ok((names, view))
}

/// Walks from the site root folder through `names`.
fn traverse(
    tx: &Transaction<'_>,
    site: PRef<Site>,
    names: &[String],
) -> Result<Vec<Step>, AppError> {
    let root = tx.get(site)?.content;
    let mut path = vec![Step {
        name: String::new(),
        content: ContentRef::Folder(root).load(tx)?,
    }];
    for name in names {
        let Content::Folder(_, folder) = &path.last().expect("non-empty").content else {
            return Err(AppError::NotFound);
        };
        let Some(any) = folder.items.get(tx, name)? else {
            return Err(AppError::NotFound);
        };
        let Some(reference) = ContentRef::resolve(tx, &any)? else {
            return Err(AppError::NotFound);
        };
        let content = reference.load(tx)?;
        path.push(Step {
            name: name.clone(),
            content,
        });
    }
    Ok(path)
}

/// Request facts the blocking part needs.
#[derive(Debug)]
struct Request {
    method: Method,
    path: String,
    query: Vec<(String, String)>,
    headers: HeaderMap,
    client: String,
    /// The browser's CSRF cookie, or the one this reply sets (so the forms of the very
    /// first page already carry a valid token).
    csrf_cookie: String,
}

impl App {
    /// The reply to `request`; `who` is set to the principal (its audit name) once known,
    /// for the request log.
    fn respond(
        &self,
        request: &Request,
        input: &Input,
        who: &mut String,
    ) -> Result<Reply, AppError> {
        let (names, view) = split_path(&request.path)?;
        let Some(site) = self.site else {
            // The instance and its database are fine; the site awaits its bootstrap
            // manager. Deploys and load balancers ask /@@health: it says so, with 200.
            if names.is_empty() && view == "health" {
                return Ok(Reply::Json(
                    StatusCode::OK,
                    serde_json::json!({
                        "status": "ok",
                        "site": "not set up",
                        "storage": self.db.storage().name(),
                        "release": self.release,
                        "pid": std::process::id(),
                    }),
                ));
            }
            return Err(AppError::NotSetUp);
        };
        let wants_json = request
            .headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("application/json"))
            || input.json.is_some();
        let credentials = self.credentials(&request.headers)?;
        let csrf_cookie = request.csrf_cookie.clone();
        let mut conn = self.db.connection();
        TransactionManager::new(3).run(&mut conn, |tx| {
            let principal = match &credentials {
                Credentials::None => Principal::Anonymous,
                Credentials::Basic(login, pass) => {
                    if !self.login_allowed(&request.client, login) {
                        return Err(AppError::TooManyRequests);
                    }
                    match self.check_password(tx, site, login, pass)? {
                        Some(p) => p,
                        None => {
                            self.login_failed(&request.client, login);
                            return Err(AppError::Unauthorized);
                        }
                    }
                }
                Credentials::Session(s) => self.session_principal(tx, site, s)?,
            };
            principal.audit_name().clone_into(who);
            let path = traverse(tx, site, &names)?;
            // What a visitor may not see does not exist for them: a hidden item answers
            // as a missing one (404, whatever the view or method), so its name is not
            // revealed by a login prompt.  The root is no secret (a private site asks
            // visitors to log in); users who may not see an item are told so (403).
            if !principal.is_authenticated() && path.len() > 1 {
                let grants: Vec<&security::Grants> =
                    path.iter().map(|s| &s.content.meta().grants).collect();
                if !security::allowed(&principal, &grants, Permission::View) {
                    return Err(AppError::NotFound);
                }
            }
            let kind = path.last().expect("non-empty").content.kind();
            let found = views::find(kind, path.len() == 1, &view, &request.method, wants_json)?;
            let ctx = Ctx {
                app: self,
                method: request.method.clone(),
                headers: &request.headers,
                query: request.query.clone(),
                input,
                principal,
                path,
                view: view.clone(),
                csrf: auth::csrf_token(&self.secret, &csrf_cookie),
                wants_json,
                site,
                client: request.client.clone(),
            };
            let allowed = |permission| {
                if found.on_container && ctx.path.len() > 1 {
                    ctx.allowed_on_container(permission)
                } else {
                    ctx.allowed(permission)
                }
            };
            if let Some(permission) = found.permission
                && !allowed(permission)
            {
                return Err(if ctx.principal.is_authenticated() {
                    AppError::Forbidden
                } else {
                    AppError::Unauthorized
                });
            }
            let unsafe_method = !matches!(request.method, Method::GET | Method::HEAD);
            // A forged cross-site form can only POST form encodings, and a browser sends
            // cookies (and cached Basic credentials) with it.  Script clients using Basic
            // auth with a JSON body, PATCH or DELETE cannot be forged that way (those need
            // a CORS preflight we never grant); everything else needs the token.
            let scripted = matches!(credentials, Credentials::Basic(..))
                && (input.json.is_some() || request.method != Method::POST);
            if unsafe_method && !scripted {
                let token = input
                    .field(auth::CSRF_FIELD)
                    .or_else(|| request.headers.get(auth::CSRF_HEADER).and_then(|v| v.to_str().ok()))
                    .unwrap_or("");
                if !auth::csrf_ok(&self.secret, &csrf_cookie, token) {
                    return Err(AppError::BadRequest(
                        "the form has expired or did not come from this site (CSRF check failed); reload the page and try again".into(),
                    ));
                }
            }
            tx.set_user(ctx.principal.audit_name());
            (found.handler)(&ctx, tx)
        })
    }
}

/// The axum handler for every path.
async fn publish(
    State(app): State<Arc<App>>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    request: axum::extract::Request,
) -> Response {
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    // Errors answer in JSON to clients that ask for it or send it.
    let wants_json = [header::ACCEPT, header::CONTENT_TYPE].iter().any(|h| {
        parts
            .headers
            .get(h)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("application/json"))
    });
    let view = parts.uri.path().rsplit('/').next().unwrap_or("").to_owned();
    let request = Request {
        method: parts.method.clone(),
        path: parts.uri.path().to_owned(),
        query: parts
            .uri
            .query()
            .and_then(|q| serde_urlencoded::from_str(q).ok())
            .unwrap_or_default(),
        // X-Forwarded-For only from the proxies serve.toml trusts.
        client: app.client_address(peer.ip(), &parts.headers),
        csrf_cookie: cookie(&parts.headers, auth::CSRF_COOKIE)
            .map(str::to_owned)
            .unwrap_or_else(auth::new_csrf_cookie),
        headers: parts.headers,
    };
    let new_csrf_cookie = cookie(&request.headers, auth::CSRF_COOKIE)
        .is_none()
        .then(|| {
            app.cookie(
                &request.headers,
                auth::CSRF_COOKIE,
                &request.csrf_cookie,
                None,
            )
        });
    let (method, path, client) = (
        request.method.clone(),
        request.path.clone(),
        request.client.clone(),
    );
    let mut principal = String::new();
    let reply = match read_input(&app, &request.headers, body).await {
        Err(e) => Err(e),
        Ok(input) => {
            let app2 = app.clone();
            let Ok(permit) = app.slots.clone().acquire_owned().await else {
                unreachable!("the semaphore is never closed")
            };
            let work = move || {
                let mut who = String::new();
                let reply = app2.respond(&request, &input, &mut who);
                drop(permit);
                (reply, who)
            };
            match tokio::task::spawn_blocking(work).await {
                Ok((reply, who)) => {
                    principal = who;
                    reply
                }
                Err(e) => {
                    tracing::error!(error = %e, "request task failed");
                    Err(AppError::Internal)
                }
            }
        }
    };
    let mut response = match reply {
        Ok(reply) => render_reply(reply),
        Err(e) => render_error(&app, e, wants_json),
    };
    if let Some(c) = new_csrf_cookie
        && let Ok(v) = HeaderValue::from_str(&c)
    {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response.headers_mut().insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    response
        .headers_mut()
        .insert("x-frame-options", HeaderValue::from_static("SAMEORIGIN"));
    let elapsed = started.elapsed();
    app.metrics
        .observe(&view, response.status().as_u16(), elapsed);
    // The request log: one line per request (README, "Logs").
    tracing::info!(
        target: "bbru::request",
        %method,
        %path,
        status = response.status().as_u16(),
        duration_ms = elapsed.as_secs_f64() * 1000.0,
        principal = if principal.is_empty() { "-" } else { principal.as_str() },
        %client,
        instance = %Instance(&app.release),
        "request"
    );
    response
}

/// Which instance served, in the request log: `RELEASE/PID`, or the pid alone when the
/// configuration names no release.
struct Instance<'a>(&'a str);

impl std::fmt::Display for Instance<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            write!(f, "{}", std::process::id())
        } else {
            write!(f, "{}/{}", self.0, std::process::id())
        }
    }
}

/// The router: everything goes to `publish`.
pub fn router(app: Arc<App>) -> axum::Router {
    axum::Router::new().fallback(publish).with_state(app)
}
