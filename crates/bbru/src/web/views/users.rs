//! User and group management (`/@@users`, on the site root only): the users (login,
//! title, groups) and groups (id, title, members) stored in the site, and the forms that
//! add, change and remove them.  Roles are not granted here but through `@@security`
//! (a user or group is a principal there: `user:<login>`, `group:<id>`).
//!
//! POST takes `action` = `add_user` | `update_user` | `set_password` | `delete_user` |
//! `add_group` | `delete_group`; each is one transaction noted like "add user bob".

use axum::http::header;
use maud::{Markup, html};
use zodb::Transaction;

use crate::i18n::Lang;
use crate::limits;
use crate::model::{ContentRef, Group, User};
use crate::security::{Principal, password};
use crate::tr;
use crate::web::render::{self, Notice, csrf, page, redirect_with_notice, view_url};
use crate::web::{AppError, Ctx, Reply, session_cookie};

/// Group ids the built-in groups use (`group:everybody`, `group:authenticated`).
const RESERVED_GROUPS: [&str; 2] = ["everybody", "authenticated"];

/// Whether `id` may be a login or a group id: 1 to 64 of `a-z`, `0-9`, `.`, `_`, `-`.
pub fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        })
}

fn bad(message: impl Into<String>) -> AppError {
    AppError::BadRequest(message.into())
}

fn field<'a>(ctx: &'a Ctx<'_>, name: &str) -> &'a str {
    ctx.input.field(name).map(str::trim).unwrap_or("")
}

fn check_title(lang: Lang, title: &str) -> Result<(), AppError> {
    if title.chars().count() > 200 {
        return Err(bad(tr!(lang, "edit-error-title-too-long")));
    }
    Ok(())
}

pub(crate) fn check_password(ctx: &Ctx<'_>) -> Result<String, AppError> {
    // Passwords are taken as typed: spaces at either end are part of them.
    let first = ctx.input.field("password").unwrap_or("");
    let second = ctx.input.field("password2").unwrap_or("");
    if first.chars().count() < limits::PASSWORD_CHARS_MIN {
        return Err(bad(tr!(
            ctx.lang,
            "password-too-short",
            min = limits::PASSWORD_CHARS_MIN
        )));
    }
    if first != second {
        return Err(bad(tr!(ctx.lang, "password-differ")));
    }
    Ok(first.to_owned())
}

/// The posted `groups`, each checked to exist (sorted, without duplicates).
fn posted_groups(ctx: &Ctx<'_>, tx: &Transaction<'_>) -> Result<Vec<String>, AppError> {
    let site = tx.get(ctx.site)?;
    let mut out: Vec<String> = Vec::new();
    for id in ctx.input.all("groups") {
        let id = id.trim();
        if id.is_empty() {
            continue;
        }
        if !site.groups.contains_key(tx, &id.to_owned())? {
            return Err(bad(tr!(ctx.lang, "users-no-group", id = format!("{id:?}"))));
        }
        out.push(id.to_owned());
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// Refuses the view anywhere but on the site root: the permission was checked on the
/// object addressed, and ManageUsers held on a subfolder must not reach the site's users.
fn root_only(ctx: &Ctx<'_>) -> Result<(), AppError> {
    if ctx.path.len() == 1 {
        Ok(())
    } else {
        Err(AppError::NotFound)
    }
}

fn back(ctx: &Ctx<'_>, notice: Notice) -> Reply {
    redirect_with_notice(&view_url(ctx, "users"), notice)
}

fn group_boxes(
    lang: Lang,
    prefix: &str,
    groups: &[(String, Group)],
    member_of: &[String],
) -> Markup {
    html! {
        @if !groups.is_empty() {
            fieldset.groups {
                legend { (tr!(lang, "users-groups")) }
                @for (id, g) in groups {
                    input type="checkbox" name="groups" value=(id) id={(prefix) "-" (id)} checked[member_of.contains(id)];
                    label.checkbox for={(prefix) "-" (id)} {
                        " " (id) @if !g.title.is_empty() { " (" (g.title) ")" }
                    }
                }
            }
        }
    }
}

/// `GET /@@users`.
pub fn list(ctx: &Ctx<'_>, tx: &Transaction<'_>) -> Result<Reply, AppError> {
    root_only(ctx)?;
    Ok(Reply::Html(list_page(ctx, tx, None)?))
}

/// Why the add-user form was refused: the id of the field it is about (`new-login`,
/// `new-title`, `new-password`, or `new-groups`) and what to say there.
type FormError = (&'static str, String);

/// The users page; with `add_error`, the add-user form shows it beside its field and
/// keeps the login and title typed.
fn list_page(
    ctx: &Ctx<'_>,
    tx: &Transaction<'_>,
    add_error: Option<FormError>,
) -> Result<String, AppError> {
    let site = tx.get(ctx.site)?;
    let mut users: Vec<User> = Vec::new();
    for item in site.users.iter(tx)? {
        let (_, user) = item?;
        users.push((*tx.get(user)?).clone());
    }
    let mut groups: Vec<(String, Group)> = Vec::new();
    for item in site.groups.iter(tx)? {
        let (id, group) = item?;
        groups.push((id, (*tx.get(group)?).clone()));
    }
    let action = view_url(ctx, "users");
    let lang = ctx.lang;
    let error_for = |id: &str| {
        add_error
            .as_ref()
            .filter(|(f, _)| *f == id)
            .map(|(_, m)| m.clone())
    };
    let kept = |name: &str| add_error.as_ref().and_then(|_| ctx.input.field(name));
    let min = limits::PASSWORD_CHARS_MIN;
    let id_help = tr!(lang, "users-id-help");
    let heading = tr!(lang, "users-heading");
    let markup = page(
        ctx,
        &heading,
        html! {
            h1 { (heading) }
            p {
                (tr!(lang, "users-roles-elsewhere")) " "
                a href="/@@security" { (tr!(lang, "users-roles-link")) }
                " " (tr!(lang, "users-roles-as")) " " code { "user:<login>" } ", " code { "group:<id>" } "."
            }
            h2 { (tr!(lang, "users-users")) }
            @if users.is_empty() { p { em { (tr!(lang, "users-none")) } } }
            @else {
                div.table-wrap { table.users {
                    thead { tr { th { (tr!(lang, "field-login")) } th { (tr!(lang, "field-title")) } th { (tr!(lang, "users-groups")) } th { (tr!(lang, "users-change")) } } }
                    tbody {
                        @for user in &users {
                            @let u = user.login.as_str();
                            tr id={"user-" (u)} {
                                td { code { (u) } }
                                td { (user.title) }
                                td { (user.groups.join(", ")) }
                                td {
                                    details {
                                        summary { (tr!(lang, "users-change-user", login = u)) }
                                        form method="post" action=(action) {
                                            (csrf(ctx))
                                            input type="hidden" name="action" value="update_user";
                                            input type="hidden" name="login" value=(u);
                                            (render::field(&format!("title-{u}"), tr!(lang, "field-title")).wrap(html! { input id={"title-" (u)} type="text" name="title" value=(user.title); }))
                                            (group_boxes(lang, &format!("u-{u}"), &groups, &user.groups))
                                            p { button type="submit" { (tr!(lang, "button-save")) } }
                                        }
                                        form method="post" action=(action) {
                                            (csrf(ctx))
                                            input type="hidden" name="action" value="set_password";
                                            input type="hidden" name="login" value=(u);
                                            (render::field(&format!("pw-{u}"), tr!(lang, "field-new-password")).wrap(html! { input id={"pw-" (u)} type="password" name="password" autocomplete="new-password" minlength=(min) required; }))
                                            (render::field(&format!("pw2-{u}"), tr!(lang, "field-again")).wrap(html! { input id={"pw2-" (u)} type="password" name="password2" autocomplete="new-password" minlength=(min) required; }))
                                            p { button type="submit" { (tr!(lang, "users-set-password")) } " " small { (tr!(lang, "users-set-password-note", login = u)) } }
                                        }
                                        form method="post" action=(action) {
                                            (csrf(ctx))
                                            input type="hidden" name="action" value="delete_user";
                                            input type="hidden" name="login" value=(u);
                                            p { button.danger type="submit" { (tr!(lang, "users-delete", name = u)) } }
                                        }
                                    }
                                }
                            }
                        }
                    }
                } }
            }
            h3 { (tr!(lang, "users-add-user")) }
            form method="post" action=(action) {
                (csrf(ctx))
                input type="hidden" name="action" value="add_user";
                @let login = render::Field { help: Some(id_help.clone()), error: error_for("new-login"), ..render::field("new-login", tr!(lang, "field-login")) };
                (login.wrap(html! { input #new-login type="text" name="login" value=[kept("login")] pattern="[a-z0-9._\\-]{1,64}" required aria-describedby=[login.described_by()] aria-invalid=[login.error.as_ref().map(|_| "true")]; }))
                @let title = render::Field { error: error_for("new-title"), ..render::field("new-title", tr!(lang, "users-full-name")) };
                (title.wrap(html! { input #new-title type="text" name="title" value=[kept("title")] aria-describedby=[title.described_by()]; }))
                @let pw = render::Field { help: Some(tr!(lang, "password-min", min = min)), error: error_for("new-password"), ..render::field("new-password", tr!(lang, "field-password")) };
                (pw.wrap(html! { input #new-password type="password" name="password" autocomplete="new-password" minlength=(min) required aria-describedby=[pw.described_by()] aria-invalid=[pw.error.as_ref().map(|_| "true")]; }))
                (render::field("new-password2", tr!(lang, "field-password-again")).wrap(html! { input #new-password2 type="password" name="password2" autocomplete="new-password" minlength=(min) required; }))
                (group_boxes(lang, "new", &groups, &[]))
                @if let Some(e) = error_for("new-groups") { p.field-error #new-groups-error { (e) } }
                p { button type="submit" { (tr!(lang, "users-add-user-button")) } }
            }
            h2 { (tr!(lang, "users-groups")) }
            @if groups.is_empty() { p { em { (tr!(lang, "users-no-groups")) } } }
            @else {
                div.table-wrap { table.groups {
                    thead { tr { th { (tr!(lang, "users-group-id")) } th { (tr!(lang, "field-title")) } th { (tr!(lang, "users-members")) } th { span.visually-hidden { (tr!(lang, "column-actions")) } } } }
                    tbody {
                        @for (id, g) in &groups {
                            tr id={"group-" (id)} {
                                td { code { (id) } }
                                td { (g.title) }
                                td {
                                    (users.iter().filter(|u| u.groups.contains(id)).map(|u| u.login.as_str()).collect::<Vec<_>>().join(", "))
                                }
                                td {
                                    form.inline method="post" action=(action) {
                                        (csrf(ctx))
                                        input type="hidden" name="action" value="delete_group";
                                        input type="hidden" name="id" value=(id);
                                        button.danger type="submit" { (tr!(lang, "users-delete", name = id.as_str())) }
                                    }
                                }
                            }
                        }
                    }
                } }
            }
            h3 { (tr!(lang, "users-add-group")) }
            form method="post" action=(action) {
                (csrf(ctx))
                input type="hidden" name="action" value="add_group";
                (render::Field { help: Some(id_help), ..render::field("new-group-id", tr!(lang, "users-group-id")) }.wrap(html! { input #new-group-id type="text" name="id" pattern="[a-z0-9._\\-]{1,64}" required aria-describedby="new-group-id-help"; }))
                (render::field("new-group-title", tr!(lang, "field-title")).wrap(html! { input #new-group-title type="text" name="title"; }))
                p { button type="submit" { (tr!(lang, "users-add-group-button")) } }
            }
        },
    );
    Ok(markup.into_string())
}

/// `POST /@@users`.
pub fn change(ctx: &Ctx<'_>, tx: &Transaction<'_>) -> Result<Reply, AppError> {
    root_only(ctx)?;
    match field(ctx, "action") {
        "add_user" => add_user(ctx, tx),
        "update_user" => update_user(ctx, tx),
        "set_password" => set_password(ctx, tx),
        "delete_user" => delete_user(ctx, tx),
        "add_group" => add_group(ctx, tx),
        "delete_group" => delete_group(ctx, tx),
        "" => Err(bad(tr!(ctx.lang, "users-no-action"))),
        other => Err(bad(tr!(
            ctx.lang,
            "users-unknown-action",
            action = format!("{other:?}")
        ))),
    }
}

/// The stored user `login`, or a clear error.
fn existing_user(
    ctx: &Ctx<'_>,
    tx: &Transaction<'_>,
    login: &str,
) -> Result<zodb::PRef<User>, AppError> {
    tx.get(ctx.site)?
        .users
        .get(tx, &login.to_owned())?
        .ok_or_else(|| bad(tr!(ctx.lang, "users-no-user", login = format!("{login:?}"))))
}

/// Adds a user; a refused form comes back (400) with the error beside its field.
fn add_user(ctx: &Ctx<'_>, tx: &Transaction<'_>) -> Result<Reply, AppError> {
    let (login, user) = match new_user(ctx, tx)? {
        Ok(new) => new,
        Err(error) => {
            let html = list_page(ctx, tx, Some(error))?;
            return Ok(Reply::HtmlStatus(axum::http::StatusCode::BAD_REQUEST, html));
        }
    };
    let user = tx.add(user)?;
    tx.get(ctx.site)?.users.insert(tx, login.clone(), user)?;
    ctx.note(tx, &format!("add user {login}"));
    Ok(back(ctx, Notice::UserAdded))
}

/// The user the add form describes, or the field it is refused for and why.
fn new_user(
    ctx: &Ctx<'_>,
    tx: &Transaction<'_>,
) -> Result<Result<(String, User), FormError>, AppError> {
    // A refusal from a shared check, placed beside `field`; other errors are failures.
    fn at<T>(
        field: &'static str,
        r: Result<T, AppError>,
    ) -> Result<Result<T, FormError>, AppError> {
        match r {
            Ok(v) => Ok(Ok(v)),
            Err(AppError::BadRequest(m)) => Ok(Err((field, m))),
            Err(e) => Err(e),
        }
    }
    let lang = ctx.lang;
    let login = field(ctx, "login");
    if !valid_id(login) {
        return Ok(Err(("new-login", tr!(lang, "users-bad-login"))));
    }
    if ctx
        .app
        .bootstrap
        .as_ref()
        .is_some_and(|(boot, _)| boot == login)
    {
        let message = tr!(lang, "users-bootstrap-login", login = format!("{login:?}"));
        return Ok(Err(("new-login", message)));
    }
    if tx
        .get(ctx.site)?
        .users
        .contains_key(tx, &login.to_owned())?
    {
        let message = tr!(lang, "users-user-exists", login = format!("{login:?}"));
        return Ok(Err(("new-login", message)));
    }
    let title = match field(ctx, "title") {
        "" => login,
        t => t,
    };
    if let Err(e) = at("new-title", check_title(lang, title))? {
        return Ok(Err(e));
    }
    let password = match at("new-password", check_password(ctx))? {
        Ok(p) => p,
        Err(e) => return Ok(Err(e)),
    };
    let groups = match at("new-groups", posted_groups(ctx, tx))? {
        Ok(g) => g,
        Err(e) => return Ok(Err(e)),
    };
    Ok(Ok((
        login.to_owned(),
        User {
            login: login.to_owned(),
            title: title.to_owned(),
            password_hash: password::hash(&password),
            groups,
            // Not 0: sessions of an earlier user of the same login (deleted since) must
            // not be valid for this one.
            session_generation: u64::from(rand::random::<u32>()),
        },
    )))
}

fn update_user(ctx: &Ctx<'_>, tx: &Transaction<'_>) -> Result<Reply, AppError> {
    let login = field(ctx, "login");
    let user = existing_user(ctx, tx, login)?;
    let title = match field(ctx, "title") {
        "" => login,
        t => t,
    };
    check_title(ctx.lang, title)?;
    let groups = posted_groups(ctx, tx)?;
    let current = tx.get(user)?;
    if current.title == title && current.groups == groups {
        return Ok(back(ctx, Notice::NothingChanged));
    }
    tx.update(user, |u| {
        u.title = title.to_owned();
        u.groups = groups;
    })?;
    ctx.note(tx, &format!("update user {login}"));
    Ok(back(ctx, Notice::UserChanged))
}

fn set_password(ctx: &Ctx<'_>, tx: &Transaction<'_>) -> Result<Reply, AppError> {
    let login = field(ctx, "login");
    let user = existing_user(ctx, tx, login)?;
    let password = check_password(ctx)?;
    let hash = password::hash(&password);
    // A new generation: every session signed for the old one is refused from now on.
    let generation = tx.update(user, |u| {
        u.password_hash = hash;
        u.session_generation = u.session_generation.wrapping_add(1);
        u.session_generation
    })?;
    ctx.note(tx, &format!("change the password of {login}"));
    let reply = back(ctx, Notice::PasswordSet);
    // Whoever changes their own password stays logged in here (with a fresh session).
    Ok(match &ctx.principal {
        Principal::User { login: me, .. } if me == login => Reply::WithHeaders(
            Box::new(reply),
            vec![(
                header::SET_COOKIE,
                session_cookie(ctx.app, ctx.headers, &ctx.principal, generation),
            )],
        ),
        _ => reply,
    })
}

/// Removes `principal`'s settings from the root folder's grants.
fn drop_root_grants(ctx: &Ctx<'_>, tx: &Transaction<'_>, principal: &str) -> Result<(), AppError> {
    let root = ContentRef::Folder(tx.get(ctx.site)?.content);
    let present = ctx.path[0].content.meta().grants.0.contains_key(principal);
    if present {
        root.update_meta(tx, |m| {
            m.grants.0.remove(principal);
        })?;
    }
    Ok(())
}

fn delete_user(ctx: &Ctx<'_>, tx: &Transaction<'_>) -> Result<Reply, AppError> {
    let login = field(ctx, "login");
    existing_user(ctx, tx, login)?;
    if matches!(&ctx.principal, Principal::User { login: me, .. } if me == login) {
        return Err(bad(tr!(ctx.lang, "users-delete-self")));
    }
    tx.get(ctx.site)?.users.remove(tx, &login.to_owned())?;
    // Only the root's grants are cleaned: finding the user's settings further down would
    // mean visiting every object of the site in this one request (unbounded work on a
    // large site).  Settings left deeper are inert — no session or password leads to a
    // deleted user — and `@@security` lists them as unknown, where they can be unset.
    // (A user created later with the same login would inherit them: the security pages
    // show them, and a manager should unset them first.)
    drop_root_grants(ctx, tx, &format!("user:{login}"))?;
    ctx.note(tx, &format!("delete user {login}"));
    Ok(back(ctx, Notice::UserDeleted))
}

fn add_group(ctx: &Ctx<'_>, tx: &Transaction<'_>) -> Result<Reply, AppError> {
    let id = field(ctx, "id");
    if !valid_id(id) {
        return Err(bad(tr!(ctx.lang, "users-bad-group-id")));
    }
    if RESERVED_GROUPS.contains(&id) {
        return Err(bad(tr!(
            ctx.lang,
            "users-reserved-group",
            id = format!("{id:?}")
        )));
    }
    let groups = tx.get(ctx.site)?.groups;
    if groups.contains_key(tx, &id.to_owned())? {
        return Err(bad(tr!(
            ctx.lang,
            "users-group-exists",
            id = format!("{id:?}")
        )));
    }
    let title = field(ctx, "title");
    check_title(ctx.lang, title)?;
    let group = tx.add(Group {
        id: id.to_owned(),
        title: title.to_owned(),
    })?;
    groups.insert(tx, id.to_owned(), group)?;
    ctx.note(tx, &format!("add group {id}"));
    Ok(back(ctx, Notice::GroupAdded))
}

fn delete_group(ctx: &Ctx<'_>, tx: &Transaction<'_>) -> Result<Reply, AppError> {
    let id = field(ctx, "id");
    let site = tx.get(ctx.site)?;
    if site.groups.remove(tx, &id.to_owned())?.is_none() {
        return Err(bad(tr!(ctx.lang, "users-no-group", id = format!("{id:?}"))));
    }
    let members: Vec<_> = site.users.iter(tx)?.collect::<Result<Vec<_>, _>>()?;
    for (_, user) in members {
        if tx.get(user)?.groups.iter().any(|g| g == id) {
            tx.update(user, |u| u.groups.retain(|g| g != id))?;
        }
    }
    // As for users, only the root's grants are cleaned (see `delete_user`).
    drop_root_grants(ctx, tx, &format!("group:{id}"))?;
    ctx.note(tx, &format!("delete group {id}"));
    Ok(back(ctx, Notice::GroupDeleted))
}

#[cfg(test)]
mod tests {
    use super::valid_id;

    #[test]
    fn ids_are_short_lower_case_words() {
        assert!(valid_id("bob") && valid_id("j.doe_2-x"));
        assert!(!valid_id("") && !valid_id("Bob") && !valid_id("a b") && !valid_id("é"));
        assert!(valid_id(&"a".repeat(64)) && !valid_id(&"a".repeat(65)));
    }
}
