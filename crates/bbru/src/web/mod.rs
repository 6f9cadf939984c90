//! The HTTP side: one axum fallback handler publishes the object tree.
//!
//! A request's path is traversed from the site's root folder (`/docs/install` is the item
//! `install` of the folder `docs`); a last segment `@@name` names a view of the object
//! reached (`/docs/@@edit`), none means its default view.  Then, in one transaction on a
//! pooled connection (retried on conflict): authenticate (HTTP Basic or the session
//! cookie), find the view, check its permission against the roles the principal holds
//! along the containment path, check the CSRF token of state-changing requests, run the
//! view, and commit with the principal as the transaction's user (the audit trail).
//!
//! Database work is blocking, so each request runs on tokio's blocking pool; the async
//! part only reads the body (bounded) and parses forms and uploads.

pub mod metrics;
pub mod render;
pub mod views;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use zodb::{DB, PRef, Transaction, TransactionManager};

use crate::config::{SecureCookies, SiteConfig};
use crate::model::{Content, ContentRef, Site};
use crate::security::auth::{self, RateLimiter};
use crate::security::{self, Grants, Permission, Principal, password};

/// Everything a request needs, shared by all requests of an instance.
pub struct App {
    pub db: DB,
    pub config: SiteConfig,
    /// `None` while the database has no site (no bootstrap manager declared yet).
    pub site: Option<PRef<Site>>,
    pub secret: String,
    /// The bootstrap manager's login and password hash, when declared and usable.
    pub bootstrap: Option<(String, String)>,
    /// Failed logins per client address and login.
    pub limiter: RateLimiter,
    /// Failed logins per login from any address (a larger budget), so rotating
    /// addresses does not lift the limit on one account.
    pub login_limiter: RateLimiter,
    pub metrics: metrics::Metrics,
    /// Where the site configuration lives (for the messages that mention it).
    pub site_config_path: String,
    /// The release serving (`bbru-X.Y.Z`), empty when not deployed as a release.
    pub release: String,
    /// One permit per pooled connection: requests beyond them wait (in async land)
    /// instead of opening connections whose caches start cold and are dropped after.
    pub slots: Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("db", &self.db)
            .finish_non_exhaustive()
    }
}

/// Seconds since the epoch, as content times are stored.
pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// A request as the views see it (the body already parsed).
#[derive(Debug, Default)]
pub struct Input {
    pub fields: Vec<(String, String)>,
    pub files: Vec<Upload>,
    pub json: Option<serde_json::Value>,
}

impl Input {
    /// The first value of form field `name`.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of form field `name` (checkbox lists).
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.fields
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn file(&self, name: &str) -> Option<&Upload> {
        self.files
            .iter()
            .find(|f| f.field == name && !f.data.is_empty())
    }
}

/// An uploaded file.
#[derive(Debug, Clone)]
pub struct Upload {
    pub field: String,
    pub filename: String,
    pub content_type: String,
    pub data: Vec<u8>,
}

/// One step of the traversal: the name in the URL and the object found.
#[derive(Debug, Clone)]
pub struct Step {
    pub name: String,
    pub content: Content,
}

/// What a view answers.
#[derive(Debug)]
pub enum Reply {
    Html(String),
    /// A redirect (303 after a POST) to a path of this site.
    Redirect(String),
    Json(StatusCode, serde_json::Value),
    /// Raw bytes with a content type (file downloads, metrics).
    Bytes {
        content_type: String,
        data: Vec<u8>,
        /// `Content-Disposition` file name, for downloads.
        filename: Option<String>,
    },
    Status(StatusCode, String),
    /// A reply with extra headers (cookies).
    WithHeaders(Box<Reply>, Vec<(header::HeaderName, String)>),
}

/// Why a request failed.  Details of internal errors are logged, never shown.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("not found")]
    NotFound,
    #[error("forbidden")]
    Forbidden,
    /// Not logged in (or bad credentials) where a login is needed.
    #[error("unauthorized")]
    Unauthorized,
    #[error("{0}")]
    BadRequest(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("too many requests")]
    TooManyRequests,
    #[error("payload too large: {0}")]
    TooLarge(String),
    #[error("the site is not set up yet")]
    NotSetUp,
    #[error(transparent)]
    Db(#[from] zodb::Error),
    /// A failure already logged where it happened.
    #[error("internal error")]
    Internal,
}

impl zodb::Retryable for AppError {
    fn is_conflict(&self) -> bool {
        matches!(self, AppError::Db(e) if e.is_conflict())
    }
}

impl From<zodb_storage::StorageError> for AppError {
    fn from(e: zodb_storage::StorageError) -> Self {
        AppError::Db(e.into())
    }
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
    /// The client's address (from `X-Forwarded-For` only when the peer is a local proxy).
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

/// Percent-encodes names into a URL path ("/" for none).
pub fn url_of<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let mut url = String::new();
    for name in names {
        url.push('/');
        url.push_str(
            &percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC)
                .to_string()
                .replace("%2D", "-")
                .replace("%2E", ".")
                .replace("%5F", "_"),
        );
    }
    if url.is_empty() {
        url.push('/');
    }
    url
}

/// Whether `name` may name an item: letters, digits, `-`, `_`, `.`, not starting with
/// `.` or `@`, at most 100 characters.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && !name.starts_with(['.', '@'])
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
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
enum Credentials {
    None,
    Basic(String, String),
    Session(auth::Session),
}

impl App {
    /// Whether another login attempt for `login` from `client` may be checked now.
    pub fn login_allowed(&self, client: &str, login: &str) -> bool {
        self.limiter.allowed(&format!("{client}|{login}")) && self.login_limiter.allowed(login)
    }

    pub fn login_failed(&self, client: &str, login: &str) {
        self.limiter.failed(&format!("{client}|{login}"));
        self.login_limiter.failed(login);
    }

    pub fn login_succeeded(&self, client: &str, login: &str) {
        self.limiter.succeeded(&format!("{client}|{login}"));
        self.login_limiter.succeeded(login);
    }

    /// Whether cookies this request sets get the `Secure` flag.
    pub fn secure(&self, headers: &HeaderMap) -> bool {
        match self.config.security.secure_cookies {
            SecureCookies::Always => true,
            SecureCookies::Never => false,
            SecureCookies::Auto => headers
                .get("x-forwarded-proto")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.eq_ignore_ascii_case("https")),
        }
    }

    /// A `Set-Cookie` value with the flags every bbru cookie has.
    pub fn cookie(
        &self,
        headers: &HeaderMap,
        name: &str,
        value: &str,
        max_age: Option<u64>,
    ) -> String {
        let mut c = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax");
        if let Some(age) = max_age {
            c.push_str(&format!("; Max-Age={age}"));
        }
        if self.secure(headers) {
            c.push_str("; Secure");
        }
        c
    }

    fn credentials(&self, headers: &HeaderMap) -> Result<Credentials, AppError> {
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
            return Ok(password::verify(pass, hash).then(|| Principal::Bootstrap {
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
    fn session_principal(
        &self,
        tx: &Transaction<'_>,
        site: PRef<Site>,
        session: &auth::Session,
    ) -> Result<Principal, AppError> {
        if session.bootstrap {
            return Ok(match &self.bootstrap {
                Some((login, _)) if *login == session.login => Principal::Bootstrap {
                    login: login.clone(),
                },
                _ => Principal::Anonymous,
            });
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

    fn respond(&self, request: &Request, input: &Input) -> Result<Reply, AppError> {
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
            let path = traverse(tx, site, &names)?;
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
            if let Some(permission) = found.permission
                && !ctx.allowed(permission)
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

/// Reads the body (bounded), parses forms, uploads and JSON.
async fn read_input(app: &App, headers: &HeaderMap, body: Body) -> Result<Input, AppError> {
    let limit = app.config.site.upload_size_max + 1024 * 1024;
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| {
        AppError::TooLarge(format!(
            "the request is larger than the {} bytes this site accepts",
            app.config.site.upload_size_max
        ))
    })?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let mut input = Input::default();
    if bytes.is_empty() {
        return Ok(input);
    }
    if content_type.starts_with("application/x-www-form-urlencoded") {
        input.fields = serde_urlencoded::from_bytes(&bytes)
            .map_err(|e| AppError::BadRequest(format!("bad form data: {e}")))?;
    } else if content_type.starts_with("multipart/form-data") {
        let boundary = multer::parse_boundary(&content_type)
            .map_err(|e| AppError::BadRequest(format!("bad multipart form: {e}")))?;
        let stream =
            futures_util::stream::once(async move { Ok::<_, std::convert::Infallible>(bytes) });
        let mut multipart = multer::Multipart::new(stream, boundary);
        while let Some(field) = multipart
            .next_field()
            .await
            .map_err(|e| AppError::BadRequest(format!("bad multipart form: {e}")))?
        {
            let name = field.name().unwrap_or("").to_owned();
            let filename = field.file_name().map(str::to_owned);
            let field_type = field.content_type().map(|m| m.to_string());
            let data = field
                .bytes()
                .await
                .map_err(|e| AppError::BadRequest(format!("bad multipart form: {e}")))?;
            if filename.is_some() && data.len() > app.config.site.upload_size_max {
                return Err(AppError::TooLarge(format!(
                    "the file {:?} has {} bytes; this site accepts at most {}",
                    filename.unwrap_or_default(),
                    data.len(),
                    app.config.site.upload_size_max
                )));
            }
            match filename {
                Some(filename) => input.files.push(Upload {
                    field: name,
                    filename,
                    content_type: field_type.unwrap_or_else(|| "application/octet-stream".into()),
                    data: data.to_vec(),
                }),
                None => input.fields.push((
                    name,
                    String::from_utf8(data.to_vec())
                        .map_err(|_| AppError::BadRequest("form field is not UTF-8".into()))?,
                )),
            }
        }
    } else if content_type.starts_with("application/json") {
        input.json = Some(
            serde_json::from_slice(&bytes)
                .map_err(|e| AppError::BadRequest(format!("bad JSON: {e}")))?,
        );
    } else {
        return Err(AppError::BadRequest(format!(
            "unsupported content type {content_type:?}"
        )));
    }
    Ok(input)
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
        // Behind a local reverse proxy, the client is the proxy's first forwarded
        // address; a remote peer's X-Forwarded-For is not trusted.
        client: match parts
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
        {
            Some(forwarded) if peer.ip().is_loopback() => forwarded.trim().to_owned(),
            _ => peer.ip().to_string(),
        },
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
    let reply = match read_input(&app, &request.headers, body).await {
        Err(e) => Err(e),
        Ok(input) => {
            let app2 = app.clone();
            let Ok(permit) = app.slots.clone().acquire_owned().await else {
                unreachable!("the semaphore is never closed")
            };
            let work = move || {
                let reply = app2.respond(&request, &input);
                drop(permit);
                reply
            };
            match tokio::task::spawn_blocking(work).await {
                Ok(reply) => reply,
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
    app.metrics
        .observe(&view, response.status().as_u16(), started.elapsed());
    response
}

fn render_reply(reply: Reply) -> Response {
    match reply {
        Reply::Html(html) => {
            ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response()
        }
        Reply::Redirect(to) => (StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response(),
        Reply::Json(status, value) => (status, axum::Json(value)).into_response(),
        Reply::Bytes {
            content_type,
            data,
            filename,
        } => {
            let mut response = ([(header::CONTENT_TYPE, content_type)], data).into_response();
            if let Some(name) = filename {
                let safe: String = name
                    .chars()
                    .filter(|c| c.is_ascii_graphic() && *c != '"' && *c != '\\')
                    .collect();
                if let Ok(v) = HeaderValue::from_str(&format!("inline; filename=\"{safe}\"")) {
                    response
                        .headers_mut()
                        .insert(header::CONTENT_DISPOSITION, v);
                }
            }
            response
        }
        Reply::Status(status, text) => (status, text).into_response(),
        Reply::WithHeaders(inner, headers) => {
            let mut response = render_reply(*inner);
            for (name, value) in headers {
                if let Ok(v) = HeaderValue::from_str(&value) {
                    response.headers_mut().append(name, v);
                }
            }
            response
        }
    }
}

fn render_error(app: &App, error: AppError, json: bool) -> Response {
    let (status, message) = match &error {
        AppError::NotFound => (StatusCode::NOT_FOUND, "Not found.".to_owned()),
        AppError::Forbidden => (
            StatusCode::FORBIDDEN,
            "You are not allowed to do this here.".to_owned(),
        ),
        AppError::Unauthorized => (StatusCode::UNAUTHORIZED, "Please log in.".to_owned()),
        AppError::BadRequest(m) => (StatusCode::BAD_REQUEST, m.clone()),
        AppError::MethodNotAllowed => (
            StatusCode::METHOD_NOT_ALLOWED,
            "Method not allowed.".to_owned(),
        ),
        AppError::TooManyRequests => (
            StatusCode::TOO_MANY_REQUESTS,
            "Too many failed logins; wait a few minutes.".to_owned(),
        ),
        AppError::TooLarge(m) => (StatusCode::PAYLOAD_TOO_LARGE, m.clone()),
        AppError::NotSetUp => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "This site has not been set up yet: declare the bootstrap manager in {} (see the comments there) and restart.",
                app.site_config_path
            ),
        ),
        AppError::Db(e) if e.is_conflict() => (
            StatusCode::CONFLICT,
            "Someone else changed this at the same time; please try again.".to_owned(),
        ),
        AppError::Internal => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal error; it has been logged.".to_owned(),
        ),
        AppError::Db(e) => {
            tracing::error!(error = %e, "request failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal error; it has been logged.".to_owned(),
            )
        }
    };
    let mut response = if json {
        (status, axum::Json(serde_json::json!({"error": {"type": status.canonical_reason(), "message": message}}))).into_response()
    } else {
        (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            render::error_page(status, &message),
        )
            .into_response()
    };
    if matches!(error, AppError::Unauthorized) {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"bbru\", charset=\"UTF-8\""),
        );
    }
    response
}

/// The router: everything goes to [`publish`].
pub fn router(app: Arc<App>) -> axum::Router {
    axum::Router::new().fallback(publish).with_state(app)
}

/// How long a stopping instance keeps serving the connections it accepted after it
/// stopped accepting new ones, before it asks them to close.  A connection accepted a
/// moment before the stop may not have sent its request yet; closed at once, it would
/// be reset with the request unread.  Its request arrives within this delay and is
/// served; the graceful shutdown then waits for every request in flight.
const DRAIN: Duration = Duration::from_millis(500);

/// The address of the client, as the views see it.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// A TCP listener that stops accepting (and drops its socket) when told, without
/// closing the connections it accepted.
struct Stoppable {
    inner: Option<tokio::net::TcpListener>,
    stop: tokio::sync::watch::Receiver<bool>,
    local: SocketAddr,
}

impl axum::serve::Listener for Stoppable {
    type Io = tokio::net::TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Some(listener) = &self.inner else {
                // Stopped: never accept again (the server is draining).
                std::future::pending::<()>().await;
                continue;
            };
            let stop = &mut self.stop;
            let stopped = async {
                loop {
                    if *stop.borrow_and_update() {
                        return;
                    }
                    if stop.changed().await.is_err() {
                        std::future::pending::<()>().await;
                    }
                }
            };
            tokio::select! {
                _ = stopped => {
                    self.inner = None;
                }
                accepted = listener.accept() => match accepted {
                    Ok(pair) => return pair,
                    Err(e) => {
                        // Out of file descriptors and the like: wait, then go on.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, Stoppable>> for Peer {
    fn connect_info(stream: axum::serve::IncomingStream<'_, Stoppable>) -> Self {
        Peer(*stream.remote_addr())
    }
}

/// Serves `app` on `listener` until `shutdown` resolves: then stops accepting, lets the
/// connections already accepted send their requests ([`DRAIN`]), and finishes every
/// request in flight before returning.
pub async fn serve(
    app: Arc<App>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let local = listener.local_addr()?;
    let listener = Stoppable {
        inner: Some(listener),
        stop: stop_rx,
        local,
    };
    let graceful = async move {
        shutdown.await;
        let _ = stop_tx.send(true);
        tokio::time::sleep(DRAIN).await;
    };
    axum::serve(
        listener,
        router(app).into_make_service_with_connect_info::<Peer>(),
    )
    .with_graceful_shutdown(graceful)
    .await
}

/// Lifetime of a session cookie.
pub fn session_lifetime(app: &App) -> Duration {
    Duration::from_secs(app.config.security.session_hours * 3600)
}

/// Headers of the reply to a login: the session cookie.
pub fn session_cookie(
    app: &App,
    headers: &HeaderMap,
    principal: &Principal,
    generation: u64,
) -> String {
    let lifetime = session_lifetime(app);
    let value = auth::sign_session(
        &app.secret,
        principal.login().unwrap_or(""),
        generation,
        matches!(principal, Principal::Bootstrap { .. }),
        lifetime,
    );
    app.cookie(
        headers,
        auth::SESSION_COOKIE,
        &value,
        Some(lifetime.as_secs()),
    )
}
