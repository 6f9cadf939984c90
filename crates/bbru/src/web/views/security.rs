//! The security view (`@@security`) of any object: its local role grants (Allow / Deny /
//! Unset per principal and grantable role), the settings inherited from the containers
//! above (read-only), and the roles the current user holds here.
//!
//! The form posts one radio group per (principal, role), named `grant.<Role>.<principal>`
//! (e.g. `grant.Editor.user:bob`), and a row to add a principal: `new_principal` with
//! `new.<Role>`.  Settings not posted stay as they are.  Only known principals (users,
//! groups, `group:everybody`, `group:authenticated`) can be given a setting; a setting of
//! an unknown one (say, of a deleted user) can still be unset.  A change that would take
//! ManageSecurity here away from the principal making it is refused (the bootstrap
//! manager holds every role anyway), so nobody locks themselves out by accident.

use std::collections::BTreeMap;

use maud::html;
use zodb::Transaction;

use crate::i18n::Lang;
use crate::security::{
    self, AUTHENTICATED, EVERYBODY, Grants, Permission, Principal, Role, Setting,
};
use crate::tr;
use crate::web::render::{Notice, csrf, page, redirect_with_notice, view_url};
use crate::web::{AppError, Ctx, Reply, url_of};

/// The role's name in forms ("Manager").
fn short(role: Role) -> &'static str {
    role.name().trim_start_matches("bbru.")
}

fn setting_word(setting: Option<Setting>) -> &'static str {
    match setting {
        Some(Setting::Allow) => "allow",
        Some(Setting::Deny) => "deny",
        None => "unset",
    }
}

/// The principals a grant may name, with a label: the built-in groups, then the groups and
/// users of the site.
fn choices(ctx: &Ctx<'_>, tx: &Transaction<'_>) -> Result<BTreeMap<String, String>, AppError> {
    let site = tx.get(ctx.site)?;
    let mut out = BTreeMap::new();
    out.insert(EVERYBODY.to_owned(), tr!(ctx.lang, "security-everybody"));
    out.insert(
        AUTHENTICATED.to_owned(),
        tr!(ctx.lang, "security-authenticated"),
    );
    for item in site.groups.iter(tx)? {
        let (id, group) = item?;
        out.insert(format!("group:{id}"), tx.get(group)?.title.clone());
    }
    for item in site.users.iter(tx)? {
        let (login, user) = item?;
        out.insert(format!("user:{login}"), tx.get(user)?.title.clone());
    }
    Ok(out)
}

/// Whether `principal` names a user or group of the site (or a built-in group).
fn known(ctx: &Ctx<'_>, tx: &Transaction<'_>, principal: &str) -> Result<bool, AppError> {
    if principal == EVERYBODY || principal == AUTHENTICATED {
        return Ok(true);
    }
    let site = tx.get(ctx.site)?;
    if let Some(login) = principal.strip_prefix("user:") {
        return Ok(site.users.contains_key(tx, &login.to_owned())?);
    }
    if let Some(id) = principal.strip_prefix("group:") {
        return Ok(site.groups.contains_key(tx, &id.to_owned())?);
    }
    Ok(false)
}

/// The three radio buttons of a setting; `what` names the principal and role for
/// screen readers (the table's headers say it to the eye).
fn radios(lang: Lang, name: &str, what: &str, current: Option<Setting>) -> maud::Markup {
    let labels = [
        ("allow", tr!(lang, "security-allow")),
        ("deny", tr!(lang, "security-deny")),
        ("unset", tr!(lang, "security-unset")),
    ];
    html! {
        fieldset.radios {
            legend.visually-hidden { (what) }
            @for (value, label) in &labels {
                label.radio {
                    input type="radio" name=(name) value=(value) checked[setting_word(current) == *value];
                    " " (label)
                }
            }
        }
    }
}

/// `GET @@security`.
pub fn form(ctx: &Ctx<'_>, tx: &Transaction<'_>) -> Result<Reply, AppError> {
    let target = ctx.target();
    let grants = &target.meta().grants;
    let choices = choices(ctx, tx)?;
    let held = security::roles(&ctx.principal, &ctx.grants_path());
    let location = ctx.location();
    let inherited: Vec<(String, &Grants)> = ctx
        .path
        .iter()
        .enumerate()
        .take(ctx.path.len().saturating_sub(1))
        .map(|(i, _)| {
            (
                url_of(ctx.path.iter().skip(1).take(i).map(|s| s.name.as_str())),
                &ctx.path[i].content.meta().grants,
            )
        })
        .filter(|(_, g)| !g.is_empty())
        .collect();
    let lang = ctx.lang;
    let label = |p: &str| match choices.get(p) {
        Some(title) if !title.is_empty() => format!("{p} ({title})"),
        Some(_) => p.to_owned(),
        None => tr!(lang, "security-unknown-principal", principal = p),
    };
    let heading = tr!(
        lang,
        "security-heading",
        title = target.meta().title.as_str()
    );
    let markup = page(
        ctx,
        &heading,
        html! {
            h1 { (heading) }
            p.roles {
                (tr!(lang, "security-your-roles")) " "
                @for (i, role) in held.iter().filter(|r| **r != Role::Anonymous).enumerate() {
                    @if i > 0 { ", " }
                    strong { (short(*role)) }
                }
                @if held.iter().all(|r| *r == Role::Anonymous) { em { (tr!(lang, "security-no-roles")) } }
                "."
            }
            p {
                (tr!(lang, "security-intro-where")) " " code { (location) } " "
                (tr!(lang, "security-intro-rest")) " "
                (tr!(lang, "security-intro-roles"))
            }
            form method="post" action=(view_url(ctx, "security")) {
                (csrf(ctx))
                h2 { (tr!(lang, "security-here")) }
                div.table-wrap { table.grants {
                    thead { tr { th { (tr!(lang, "security-principal")) } @for role in Role::GRANTABLE { th { (short(role)) } } } }
                    tbody {
                        @for (principal, _) in &grants.0 {
                            tr {
                                td { (label(principal)) }
                                @for role in Role::GRANTABLE {
                                    td { (radios(lang, &format!("grant.{}.{principal}", short(role)), &format!("{principal}: {}", short(role)), grants.get(principal, role))) }
                                }
                            }
                        }
                        tr.new {
                            td {
                                label.visually-hidden for="new_principal" { (tr!(lang, "security-add-principal")) }
                                select #new_principal name="new_principal" {
                                    option value="" { (tr!(lang, "security-add-principal-option")) }
                                    @for (id, _) in &choices {
                                        option value=(id) { (label(id)) }
                                    }
                                }
                            }
                            @for role in Role::GRANTABLE {
                                td { (radios(lang, &format!("new.{}", short(role)), &format!("{}: {}", tr!(lang, "security-add-principal"), short(role)), None)) }
                            }
                        }
                    }
                } }
                @if grants.is_empty() { p { em { (tr!(lang, "security-none-here")) } } }
                p { button type="submit" { (tr!(lang, "button-save")) } }
            }
            h2 { (tr!(lang, "security-inherited")) }
            @if inherited.is_empty() {
                p { em { (tr!(lang, "security-none-inherited")) } }
            } @else {
                div.table-wrap { table.inherited {
                    thead { tr { th { (tr!(lang, "security-on")) } th { (tr!(lang, "security-principal")) } @for role in Role::GRANTABLE { th { (short(role)) } } } }
                    tbody {
                        @for (url, g) in &inherited {
                            @for (principal, _) in &g.0 {
                                tr {
                                    td { a href=(if url == "/" { "/@@security".to_owned() } else { format!("{url}/@@security") }) { code { (url) } } }
                                    td { (label(principal)) }
                                    @for role in Role::GRANTABLE {
                                        td { @match g.get(principal, role) { Some(Setting::Allow) => (tr!(lang, "security-allow")), Some(Setting::Deny) => (tr!(lang, "security-deny")), None => "" } }
                                    }
                                }
                            }
                        }
                    }
                } }
            }
        },
    );
    Ok(Reply::Html(markup.into_string()))
}

fn parse_role(lang: Lang, name: &str) -> Result<Role, AppError> {
    Role::parse(name)
        .filter(|r| Role::GRANTABLE.contains(r))
        .ok_or_else(|| {
            AppError::BadRequest(tr!(lang, "security-bad-role", role = format!("{name:?}")))
        })
}

fn parse_setting(lang: Lang, value: &str) -> Result<Option<Setting>, AppError> {
    match value {
        "allow" => Ok(Some(Setting::Allow)),
        "deny" => Ok(Some(Setting::Deny)),
        "unset" | "" => Ok(None),
        other => Err(AppError::BadRequest(tr!(
            lang,
            "security-bad-setting",
            setting = format!("{other:?}")
        ))),
    }
}

/// `POST @@security`: applies the posted settings to this object's grants.
pub fn change(ctx: &Ctx<'_>, tx: &Transaction<'_>) -> Result<Reply, AppError> {
    let target = ctx.target();
    let before = &target.meta().grants;
    let mut grants = before.clone();
    let mut changes: Vec<(String, Role, Option<Setting>)> = Vec::new();
    for (key, value) in &ctx.input.fields {
        let Some(rest) = key.strip_prefix("grant.") else {
            continue;
        };
        let Some((role, principal)) = rest.split_once('.') else {
            return Err(AppError::BadRequest(tr!(
                ctx.lang,
                "security-bad-field",
                field = format!("{key:?}")
            )));
        };
        changes.push((
            principal.to_owned(),
            parse_role(ctx.lang, role)?,
            parse_setting(ctx.lang, value)?,
        ));
    }
    if let Some(principal) = ctx
        .input
        .field("new_principal")
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        if !known(ctx, tx, principal)? {
            return Err(AppError::BadRequest(tr!(
                ctx.lang,
                "security-not-principal",
                principal = format!("{principal:?}")
            )));
        }
        for role in Role::GRANTABLE {
            if let Some(value) = ctx.input.field(&format!("new.{}", short(role))) {
                changes.push((principal.to_owned(), role, parse_setting(ctx.lang, value)?));
            }
        }
    }
    for (principal, role, setting) in changes {
        if setting.is_some() && !known(ctx, tx, &principal)? {
            return Err(AppError::BadRequest(tr!(
                ctx.lang,
                "security-only-unset",
                principal = format!("{principal:?}")
            )));
        }
        grants.set(&principal, role, setting);
    }
    if grants == *before {
        return Ok(redirect_with_notice(
            &view_url(ctx, "security"),
            Notice::NothingChanged,
        ));
    }
    let mut path = ctx.grants_path();
    path.pop();
    path.push(&grants);
    let bootstrap = matches!(ctx.principal, Principal::Bootstrap { .. });
    if !bootstrap && !security::allowed(&ctx.principal, &path, Permission::ManageSecurity) {
        return Err(AppError::BadRequest(tr!(
            ctx.lang,
            "security-lockout",
            location = ctx.location()
        )));
    }
    target.reference().update_meta(tx, |m| m.grants = grants)?;
    ctx.note(tx, &format!("change grants on {}", ctx.location()));
    Ok(redirect_with_notice(
        &view_url(ctx, "security"),
        Notice::GrantsSaved,
    ))
}
