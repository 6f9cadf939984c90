//! The publishing pipeline: the axum handler for every path.  On the blocking pool,
//! holding a connection slot, it runs one transaction: authenticate, traverse, find the
//! view, check its permission and the CSRF token, run it, commit with the principal as
//! the user.
//!
//! A request with a body is first admitted: with a slot, in a read-only transaction, it
//! is authenticated, its view found and its permission checked, which also says how
//! large a body the view takes and where uploads go.  Only then is the body read
//! (bounded, within the instance's body budget; a multipart form parsed as it arrives,
//! its files streamed to disk once the CSRF token before them checked out), and the
//! rest is parsed on the blocking pool with the slot held, so an anonymous or
//! unauthorised client never gets its body read, let alone parsed or stored.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::response::Response;
use zodb::{PRef, Transaction, TransactionManager};

use crate::i18n::Lang;
use crate::limits;
use crate::model::{Content, ContentRef, Site, publication};
use crate::security::auth;
use crate::security::{self, Grants, Permission, Principal};

use super::auth::Credentials;
use super::error::render_error;
use super::input::{
    Admitted, Received, discard_small_body, form_pairs, has_body, parse_input, read_input,
};
use super::nav::Sections;
use super::page_cache::{Asked, PageKey};
use super::reply::render_reply;
use super::workers::{Answered, Notes, plain_view};
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
    /// The browser's CSRF cookie (or the one the reply sets if a form needs it).
    csrf_cookie: &'a str,
    /// The CSRF token forms must carry, made when the first form asks ([`Ctx::csrf`]);
    /// set, it also says the reply must set the cookie for a visitor without one.
    csrf: std::cell::OnceCell<String>,
    pub wants_json: bool,
    pub site: PRef<Site>,
    /// The client's address (from `X-Forwarded-For` only when the peer is a trusted proxy).
    pub client: String,
    /// The interface language of the reply ([`crate::i18n::choose`]).
    pub lang: Lang,
    /// The section navigation, for the HTML views of GET requests.
    pub sections: Option<Sections>,
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
    /// The CSRF token for the forms of this reply.  A reply that asks for it sets the
    /// CSRF cookie for a visitor who has none; one that never does (a page with no form
    /// that changes anything, the common anonymous view) sets no cookie and computes no
    /// token.
    pub fn csrf(&self) -> &str {
        self.csrf
            .get_or_init(|| auth::csrf_token(&self.app.secret, self.csrf_cookie))
    }

    /// Whether a form of this reply carries the CSRF token.
    pub fn csrf_used(&self) -> bool {
        self.csrf.get().is_some()
    }

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

    /// Whether the principal has `permission` on the item `child` of the addressed folder
    /// (for `View`: and may see it, [`Ctx::may_see`]; listings skip private items).
    pub fn allowed_on(&self, child: &Content, permission: Permission) -> bool {
        if permission == Permission::View {
            return self.may_see(child);
        }
        let mut path = self.grants_path();
        path.push(&child.meta().grants);
        security::allowed(&self.principal, &path, permission)
    }

    /// Whether the principal may see the item `child` of the addressed object (View, and
    /// Edit on the private ones: `security::visible`).
    pub fn may_see(&self, child: &Content) -> bool {
        let metas = self.path.iter().map(|s| s.content.meta());
        let levels = publication::levels(metas.chain(std::iter::once(child.meta())));
        security::visible(&self.principal, &levels)
    }

    /// Marks the transaction with who does what where (the audit trail).
    pub fn note(&self, tx: &Transaction<'_>, what: &str) {
        tx.set_user(self.principal.audit_name());
        tx.note(what);
    }
}

/// Whether `method` may change state (and so needs the CSRF token from a browser).
fn unsafe_method(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD)
}

/// Whether a request comes from a script rather than a browser, so it needs no CSRF
/// token.  A forged cross-site form can only POST form encodings, and a browser sends
/// cookies (and cached Basic credentials) with it.  Script clients using Basic auth with
/// a JSON body, PATCH or DELETE, or an API token (which no browser sends by itself)
/// cannot be forged that way (those need a CORS preflight we never grant); everything
/// else needs the token.
fn scripted(credentials: &Credentials, method: &Method, json: bool) -> bool {
    matches!(credentials, Credentials::Bearer(_))
        || (matches!(credentials, Credentials::Basic(..)) && (json || *method != Method::POST))
}

/// Splits a request path into item names and the view name (`""` for the default view).
pub(super) fn split_path(path: &str) -> Result<(Vec<String>, String), AppError> {
    let mut names = Vec::new();
    let mut view = String::new();
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    // Discovery files live at the root by convention (views/feeds.rs); an item of the
    // root with one of these names is shadowed.
    if let [only @ ("robots.txt" | "sitemap.xml")] = segments.as_slice() {
        return Ok((Vec::new(), (*only).to_owned()));
    }
    for (i, segment) in segments.iter().enumerate() {
        let decoded = percent_encoding::percent_decode_str(segment)
            .decode_utf8()
            .map_err(|_| AppError::BadRequest("path is not UTF-8".into()))?
            .into_owned();
        if let Some(v) = decoded.strip_prefix("@@") {
            // `@@images/<scale>` (views/images.rs) is a view with one segment more.
            if v == "images" && i + 2 == segments.len() {
                view = format!("images/{}", segments[i + 1]);
                break;
            }
            if i + 1 != segments.len() {
                return Err(AppError::NotFound);
            }
            view = v.to_owned();
        } else if decoded.starts_with('@') && i + 1 == segments.len() {
            // plone.restapi's endpoints (`/@login`); no item name starts with '@'.
            view = decoded;
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
    /// The client asks for JSON (`Accept`) or sends it (`Content-Type`).
    wants_json: bool,
    lang: Lang,
}

/// What the first steps of the pipeline found.
struct Resolved {
    principal: Principal,
    path: Vec<Step>,
    view: String,
    found: views::Found,
}

impl App {
    /// Authenticates, traverses, finds the view and checks its permission.
    fn resolve(
        &self,
        tx: &Transaction<'_>,
        site: PRef<Site>,
        request: &Request,
        credentials: &Credentials,
        wants_json: bool,
    ) -> Result<Resolved, AppError> {
        let (names, view) = split_path(&request.path)?;
        let principal = match credentials {
            Credentials::None => Principal::Anonymous,
            Credentials::Basic(login, pass) => {
                self.login_allowed(&request.client, login)?;
                match self.basic_principal(tx, site, login, pass)? {
                    Some(p) => p,
                    None => {
                        self.login_failed(&request.client, login);
                        return Err(AppError::Unauthorized);
                    }
                }
            }
            Credentials::Session(s) => self.session_principal(tx, site, s)?,
            Credentials::Bearer(s) => match self.session_principal(tx, site, s)? {
                // A revoked or stale token is an error, not a silent anonymous request.
                Principal::Anonymous => return Err(AppError::Unauthorized),
                p => p,
            },
        };
        let path = traverse(tx, site, &names)?;
        let grants: Vec<&Grants> = path.iter().map(|s| &s.content.meta().grants).collect();
        // What a visitor may not see does not exist for them: a hidden item answers
        // as a missing one (404, whatever the view or method), so its name is not
        // revealed by a login prompt.  The root is no secret (a private site asks
        // visitors to log in); users who may not see an item are told so (403).
        if !principal.is_authenticated()
            && path.len() > 1
            && !security::allowed(&principal, &grants, Permission::View)
        {
            return Err(AppError::NotFound);
        }
        // A private item is missing for whoever may not edit it (`model::publication`).
        let levels = publication::levels(path.iter().map(|s| s.content.meta()));
        if levels.iter().any(|(_, private)| *private) && !security::visible(&principal, &levels) {
            return Err(AppError::NotFound);
        }
        let kind = path.last().expect("non-empty").content.kind();
        let found = views::find(kind, path.len() == 1, &view, &request.method, wants_json)?;
        if let Some(permission) = found.permission {
            // Removing an item is decided on its container.
            let on = if found.on_container && grants.len() > 1 {
                &grants[..grants.len() - 1]
            } else {
                &grants[..]
            };
            if !security::allowed(&principal, on, permission) {
                return Err(if principal.is_authenticated() {
                    AppError::Forbidden
                } else {
                    AppError::Unauthorized
                });
            }
        }
        Ok(Resolved {
            principal,
            path,
            view,
            found,
        })
    }

    /// Admits a request with a body: authenticated, view found and allowed; returns
    /// what the view takes (see [`Admitted`]).
    fn admit(&self, request: &Request, credentials: &Credentials) -> Result<Admitted, AppError> {
        let Some(site) = self.site else {
            return Err(AppError::NotSetUp);
        };
        let mut conn = self.db.connection();
        // Fails at once (503) while a ZEO server is away, as `respond` does.
        let tx = conn.try_begin()?;
        let resolved = self.resolve(&tx, site, request, credentials, request.wants_json)?;
        // A multipart form is never JSON: the token is needed unless the credentials
        // are a script's.
        let csrf = resolved.found.csrf
            && unsafe_method(&request.method)
            && !scripted(credentials, &request.method, false);
        Ok(Admitted {
            uploads: resolved.found.uploads,
            spool_dir: tx.blob_temp_dir(),
            csrf_cookie: csrf.then(|| request.csrf_cookie.clone()),
        })
    }

    /// The reply to `request`, with [`Notes`] on the way.
    fn respond(
        &self,
        request: &Request,
        credentials: &Credentials,
        input: &Input,
        notes: &Notes,
    ) -> Result<Reply, AppError> {
        let (names, view) = split_path(&request.path)?;
        if names.is_empty() && view == "style.css" {
            return Ok(super::render::style_sheet());
        }
        let health = names.is_empty() && view == "health";
        // Health checks the storage itself first: caches must not answer for it.
        if health && let Some(unavailable) = views::ops::storage_unavailable(self) {
            return Ok(unavailable);
        }
        let Some(site) = self.site else {
            // Deploys and load balancers ask /@@health: the instance and its database
            // are fine, the site awaits its bootstrap manager; it says so, with 200.
            if health {
                return Ok(views::ops::health_not_set_up(self));
            }
            return Err(AppError::NotSetUp);
        };
        let wants_json = request.wants_json;
        let csrf_cookie = request.csrf_cookie.clone();
        let mut conn = self.db.connection();
        let work = |tx: &Transaction<'_>| -> Result<Reply, AppError> {
            let Resolved {
                principal,
                path,
                view,
                found,
            } = self.resolve(tx, site, request, credentials, wants_json)?;
            principal
                .audit_name()
                .clone_into(&mut notes.who.borrow_mut());
            // The navigation is for pages: not for JSON, forms posted or downloads.
            let download = view.is_empty()
                && matches!(
                    path.last().map(|s| &s.content),
                    Some(Content::File(..) | Content::Image(..))
                );
            let sections =
                (!wants_json && matches!(request.method, Method::GET | Method::HEAD) && !download)
                    .then(|| super::nav::load(tx, &principal, &path))
                    .transpose()?;
            let ctx = Ctx {
                app: self,
                method: request.method.clone(),
                headers: &request.headers,
                query: request.query.clone(),
                input,
                principal,
                path,
                view,
                csrf_cookie: &csrf_cookie,
                csrf: std::cell::OnceCell::new(),
                wants_json,
                site,
                client: request.client.clone(),
                lang: request.lang,
                sections,
            };
            let scripted = scripted(credentials, &request.method, input.json.is_some());
            if unsafe_method(&request.method) && !scripted && found.csrf {
                let token = input
                    .field(auth::CSRF_FIELD)
                    .or_else(|| {
                        request
                            .headers
                            .get(auth::CSRF_HEADER)
                            .and_then(|v| v.to_str().ok())
                    })
                    .unwrap_or("");
                if !auth::csrf_ok(&self.secret, &csrf_cookie, token) {
                    return Err(AppError::BadRequest(crate::tr!(request.lang, "error-csrf")));
                }
            }
            tx.set_user(ctx.principal.audit_name());
            let reply = (found.handler)(&ctx, tx);
            notes.csrf_used.set(ctx.csrf_used());
            notes.snapshot.set(Some(tx.snapshot()));
            reply
        };
        // A conflict no resolver merged is retried by the transaction manager, on a new
        // snapshot after a short random wait, `conflict_retries` times (past a few, the
        // instance's requests that kept conflicting take turns), then answered 409; a
        // lock timeout (the objects held by a commit that did not finish) is tried
        // again a bounded number of times, then answered 503.
        let manager = TransactionManager::new(self.conflict_retries.saturating_add(1))
            .with_backoff(limits::CONFLICT_RETRY_BACKOFF_MAX)
            .with_turns(self.conflict_turns.clone(), limits::CONFLICT_TURNS_AFTER);
        let mut lock_retries = 0;
        loop {
            let mut runs = 0u32;
            let result = manager.run(&mut conn, |tx: &Transaction<'_>| {
                runs += 1;
                if runs > 1 {
                    self.metrics.conflict_retried();
                    tracing::debug!(path = %request.path, retry = runs - 1, "conflict; running the request again");
                }
                work(tx)
            });
            match result {
                Err(e) if e.is_lock_timeout() && lock_retries < limits::LOCK_TIMEOUT_RETRIES => {
                    lock_retries += 1;
                    tracing::warn!(error = %e, path = %request.path, retries = lock_retries, "lock timeout; trying the request again");
                }
                Err(e) if zodb::Retryable::is_conflict(&e) => {
                    self.metrics.conflict_given_up();
                    tracing::info!(error = %e, path = %request.path, attempts = runs, "still conflicting after every attempt; answering 409");
                    return Err(e);
                }
                done => return done,
            }
        }
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
    let label = split_path(parts.uri.path()).map_or("other", |(_, view)| views::label(&view));
    let lang = crate::i18n::choose(&parts.headers, app.config.site.language);
    let request = Request {
        method: parts.method.clone(),
        path: parts.uri.path().to_owned(),
        query: parts
            .uri
            .query()
            .and_then(|q| form_pairs(q.as_bytes()).ok())
            .unwrap_or_default(),
        // X-Forwarded-For only from the proxies serve.toml trusts.
        client: app.client_address(peer.ip(), &parts.headers),
        csrf_cookie: cookie(&parts.headers, auth::CSRF_COOKIE)
            .map(str::to_owned)
            .unwrap_or_else(auth::new_csrf_cookie),
        wants_json,
        lang,
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
    let Answered {
        reply,
        principal,
        csrf_used,
        ..
    } = handle(&app, request, body).await;
    let mut response = match reply {
        Ok(reply) => render_reply(reply),
        Err(e) => render_error(&app, e, wants_json, lang),
    };
    // Pages are in the language the cookie or Accept-Language chose: caches must keep
    // one copy per language (JSON stays the same whatever the language).
    let html = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    if html || response.status().is_redirection() {
        response.headers_mut().append(
            header::VARY,
            HeaderValue::from_static("Accept-Language, Cookie"),
        );
    }
    if csrf_used
        && let Some(c) = new_csrf_cookie
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
        .observe(label, response.status().as_u16(), elapsed);
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

/// Admits the request, reads its body, parses it and answers: no step before the one
/// that needs it.
async fn handle(app: &Arc<App>, request: Request, body: axum::body::Body) -> Answered {
    answer(app, request, body)
        .await
        .unwrap_or_else(|e| Answered::bare(Err(e)))
}

async fn answer(
    app: &Arc<App>,
    request: Request,
    body: axum::body::Body,
) -> Result<Answered, AppError> {
    // Reading the headers is cheap; a malformed `Authorization` ends the request here.
    let credentials = match app.credentials(&request.headers) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            discard_small_body(app, &request.headers, body).await;
            return Err(e);
        }
    };
    let request = Arc::new(request);
    let received: Option<Received> = if has_body(&request.headers) {
        let (r, c) = (request.clone(), credentials.clone());
        let admitted = match app.blocking(move |app| app.admit(&r, &c)).await {
            Ok(admitted) => admitted,
            Err(e) => {
                discard_small_body(app, &request.headers, body).await;
                return Err(e);
            }
        };
        Some(read_input(app, &request.headers, body, admitted).await?)
    } else {
        None
    };
    let view = split_path(&request.path).map_or(String::new(), |(_, view)| view);
    let plain = received.is_none() && plain_view(&request.method, &view);
    let cache_key = received.is_none().then(|| {
        let asked = Asked {
            method: &request.method,
            view: &view,
            path: &request.path,
            has_query: !request.query.is_empty(),
            wants_json: request.wants_json,
            headers: &request.headers,
            lang: request.lang,
        };
        PageKey::of(&asked, app.config.site.url.is_none())
    });
    let respond = move |app: &App, received: Option<Received>| {
        let input = parse_input(&request.headers, received)?;
        let notes = Notes::default();
        let reply = app.respond(&request, &credentials, &input, &notes);
        Ok(Answered::new(reply, notes))
    };
    match cache_key.flatten() {
        key if plain => app.run_view(key, move |app| respond(app, None)).await,
        Some(key) => app.run_kept(key, move |app| respond(app, None)).await,
        None => app.blocking(move |app| respond(app, received)).await,
    }
}

/// The router: everything goes to `publish`.
pub fn router(app: Arc<App>) -> axum::Router {
    axum::Router::new().fallback(publish).with_state(app)
}
