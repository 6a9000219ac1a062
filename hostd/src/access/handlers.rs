//! `/api/v1/access/…`: users, groups, roles, the ACL, the caller's API tokens and effective
//! permissions. The privilege each needs is checked before by [`super::rules`]; what is
//! checked here is what depends on the body (root's account, a token creating tokens).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use keel_api::access::{
    builtin_role, builtin_roles, check_acl_path, valid_groupid, valid_userid, AclEntry, AclUpdate,
    GroupCreate, GroupInfo, GroupUpdate, Permissions, PermissionsQuery, Privilege, RoleInfo,
    RoleSpec, TokenEntry, TokenSpec, UgidType, UserCreate, UserInfo, UserUpdate,
};
use keel_api::auth::TokenCreated;
use keel_api::ErrorBody;

use super::eval::{AccessConfig, GroupMeta, Subject, TokenMeta, UserMeta, ROOT};
use super::store::{
    acl_key, group_key, role_key, tokenmeta_key, unix_now, usermeta_key, Backend, StoredRole,
};
use crate::error::{Error, Result};
use crate::http::{ApiError, JsonBody, Path, Query};
use crate::Node;

type ApiResult<T> = std::result::Result<T, ApiError>;
type Cfg = Extension<Arc<AccessConfig>>;

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError(Error::Internal(format!("worker failed: {e}"))))?
        .map_err(ApiError)
}

/// The access routes (behind authentication and [`super::enforce`]).
pub fn routes() -> Router<Arc<Node>> {
    Router::new()
        .route("/api/v1/access/users", get(list_users).post(create_user))
        .route(
            "/api/v1/access/users/{userid}",
            get(get_user).put(update_user).delete(delete_user),
        )
        .route("/api/v1/access/groups", get(list_groups).post(create_group))
        .route(
            "/api/v1/access/groups/{groupid}",
            get(get_group).put(update_group).delete(delete_group),
        )
        .route("/api/v1/access/roles", get(list_roles).post(create_role))
        .route(
            "/api/v1/access/roles/{roleid}",
            get(get_role).put(update_role).delete(delete_role),
        )
        .route("/api/v1/access/acl", get(list_acl).put(update_acl))
        .route("/api/v1/access/tokens", get(list_tokens).post(create_token))
        .route(
            "/api/v1/access/tokens/{tokenid}",
            axum::routing::delete(delete_token),
        )
        .route("/api/v1/access/permissions", get(permissions))
}

fn check_expire(field: &str, expire: Option<i64>) -> Result<()> {
    if let Some(e) = expire {
        if e < 0 || (e > 0 && e <= unix_now()) {
            return Err(Error::validation(
                field,
                format!("{e} is not in the future (Unix seconds; 0 or absent = never)"),
            ));
        }
    }
    Ok(())
}

fn check_groups_exist(cfg: &AccessConfig, groups: &[String]) -> Result<()> {
    for (i, g) in groups.iter().enumerate() {
        if !cfg.groups.contains_key(g) {
            return Err(Error::validation(
                &format!("groups[{i}]"),
                format!("group {g:?} does not exist; create it first"),
            ));
        }
    }
    Ok(())
}

fn user_info(userid: &str, created: i64, m: Option<&UserMeta>) -> UserInfo {
    let m = m.cloned().unwrap_or_default();
    UserInfo {
        userid: userid.to_string(),
        enable: m.enable,
        expire: m.expire.filter(|e| *e > 0),
        comment: m.comment,
        groups: m.groups,
        created,
    }
}

fn find_user(b: &Backend, cfg: &AccessConfig, userid: &str) -> Result<UserInfo> {
    b.accounts()?
        .into_iter()
        .find(|(u, _)| u == userid)
        .map(|(u, c)| user_info(&u, c, cfg.users.get(&u)))
        .ok_or_else(|| Error::NotFound(format!("user {userid:?} does not exist")))
}

fn only_root_changes_root(s: &Subject, userid: &str, cfg: &AccessConfig) -> Result<()> {
    if userid == ROOT && !super::is_full_root(cfg, s) {
        return Err(Error::Forbidden(
            "only root may change or delete the root account".into(),
        ));
    }
    Ok(())
}

// ------------------------------------------------------------------ users

#[utoipa::path(get, path = "/api/v1/access/users", tag = "access",
    responses((status = 200, body = [UserInfo]), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_users(
    State(node): State<Arc<Node>>,
    Extension(cfg): Cfg,
) -> ApiResult<Json<Vec<UserInfo>>> {
    Ok(Json(
        blocking(move || {
            let b = Backend::of(&node);
            Ok(b.accounts()?
                .into_iter()
                .map(|(u, c)| user_info(&u, c, cfg.users.get(&u)))
                .collect())
        })
        .await?,
    ))
}

#[utoipa::path(post, path = "/api/v1/access/users", tag = "access", request_body = UserCreate,
    responses((status = 201, body = UserInfo), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn create_user(
    State(node): State<Arc<Node>>,
    Extension(cfg): Cfg,
    JsonBody(req): JsonBody<UserCreate>,
) -> ApiResult<Response> {
    let info = blocking(move || {
        if !valid_userid(&req.userid) {
            return Err(Error::validation(
                "userid",
                format!(
                    "{:?} is not a valid user name: 1-64 letters, digits, '-', '_', '.', '@'",
                    req.userid
                ),
            ));
        }
        check_expire("expire", req.expire)?;
        check_groups_exist(&cfg, &req.groups)?;
        if node.auth.user_exists(&req.userid)? {
            return Err(Error::Conflict(format!(
                "user {:?} already exists",
                req.userid
            )));
        }
        node.auth.set_password(&req.userid, &req.password)?;
        let meta = UserMeta {
            enable: req.enable,
            expire: req.expire,
            comment: req.comment.filter(|c| !c.is_empty()),
            groups: req.groups,
        };
        Backend::of(&node).put(&usermeta_key(&req.userid), &serde_json::json!(meta))?;
        Ok(user_info(&req.userid, unix_now(), Some(&meta)))
    })
    .await?;
    Ok((StatusCode::CREATED, Json(info)).into_response())
}

#[utoipa::path(get, path = "/api/v1/access/users/{userid}", tag = "access", params(("userid" = String, Path)),
    responses((status = 200, body = UserInfo), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_user(
    State(node): State<Arc<Node>>,
    Extension(cfg): Cfg,
    Path(userid): Path<String>,
) -> ApiResult<Json<UserInfo>> {
    Ok(Json(
        blocking(move || find_user(&Backend::of(&node), &cfg, &userid)).await?,
    ))
}

#[utoipa::path(put, path = "/api/v1/access/users/{userid}", tag = "access", params(("userid" = String, Path)), request_body = UserUpdate,
    responses((status = 200, body = UserInfo), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn update_user(
    State(node): State<Arc<Node>>,
    Extension(cfg): Cfg,
    Extension(s): Extension<Subject>,
    Path(userid): Path<String>,
    JsonBody(req): JsonBody<UserUpdate>,
) -> ApiResult<Json<UserInfo>> {
    Ok(Json(
        blocking(move || {
            let b = Backend::of(&node);
            let cur = find_user(&b, &cfg, &userid)?;
            only_root_changes_root(&s, &userid, &cfg)?;
            if userid == ROOT && (req.enable == Some(false) || req.expire.is_some_and(|e| e > 0)) {
                return Err(Error::validation(
                    "enable",
                    "root cannot be disabled or expire",
                ));
            }
            check_expire("expire", req.expire)?;
            let mut meta = cfg.users.get(&userid).cloned().unwrap_or_default();
            if let Some(g) = req.groups {
                check_groups_exist(&cfg, &g)?;
                meta.groups = g;
            }
            if let Some(e) = req.enable {
                meta.enable = e;
            }
            if let Some(e) = req.expire {
                meta.expire = Some(e).filter(|e| *e > 0);
            }
            if let Some(c) = req.comment {
                meta.comment = Some(c).filter(|c| !c.is_empty());
            }
            if let Some(pw) = req.password {
                node.auth.set_password(&userid, &pw)?;
            }
            b.put(&usermeta_key(&userid), &serde_json::json!(meta))?;
            Ok(user_info(&userid, cur.created, Some(&meta)))
        })
        .await?,
    ))
}

#[utoipa::path(delete, path = "/api/v1/access/users/{userid}", tag = "access", params(("userid" = String, Path)),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete_user(
    State(node): State<Arc<Node>>,
    Extension(cfg): Cfg,
    Path(userid): Path<String>,
) -> ApiResult<StatusCode> {
    blocking(move || {
        if userid == ROOT {
            return Err(Error::validation(
                "userid",
                "the root account cannot be deleted",
            ));
        }
        let b = Backend::of(&node);
        if !b.delete_account(&userid)? {
            return Err(Error::NotFound(format!("user {userid:?} does not exist")));
        }
        b.delete(&usermeta_key(&userid))?;
        let tok_prefix = format!("{userid}!");
        for k in cfg.tokens.keys().filter(|k| k.starts_with(&tok_prefix)) {
            if let Some((u, id)) = k.split_once('!') {
                b.delete(&tokenmeta_key(u, id))?;
            }
        }
        for e in cfg.acl.iter().filter(|e| {
            (e.ugid_type == UgidType::User && e.ugid == userid)
                || (e.ugid_type == UgidType::Token && e.ugid.starts_with(&tok_prefix))
        }) {
            b.delete(&acl_key(e))?;
        }
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

// ------------------------------------------------------------------ groups

fn group_info(cfg: &AccessConfig, g: &str, m: &GroupMeta) -> GroupInfo {
    GroupInfo {
        groupid: g.to_string(),
        comment: m.comment.clone(),
        members: cfg
            .users
            .iter()
            .filter(|(_, u)| u.groups.iter().any(|x| x == g))
            .map(|(u, _)| u.clone())
            .collect(),
    }
}

#[utoipa::path(get, path = "/api/v1/access/groups", tag = "access",
    responses((status = 200, body = [GroupInfo]), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_groups(Extension(cfg): Cfg) -> Json<Vec<GroupInfo>> {
    Json(
        cfg.groups
            .iter()
            .map(|(g, m)| group_info(&cfg, g, m))
            .collect(),
    )
}

#[utoipa::path(post, path = "/api/v1/access/groups", tag = "access", request_body = GroupCreate,
    responses((status = 201, body = GroupInfo), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn create_group(
    State(node): State<Arc<Node>>,
    JsonBody(req): JsonBody<GroupCreate>,
) -> ApiResult<Response> {
    let info = blocking(move || {
        if !valid_groupid(&req.groupid) {
            return Err(Error::validation(
                "groupid",
                format!(
                    "{:?} is not a valid group name: 1-64 letters, digits, '-', '_', '.'",
                    req.groupid
                ),
            ));
        }
        let m = GroupMeta {
            comment: req.comment.filter(|c| !c.is_empty()),
        };
        Backend::of(&node).create(
            &group_key(&req.groupid),
            &serde_json::json!(m),
            &format!("group {:?}", req.groupid),
        )?;
        Ok(GroupInfo {
            groupid: req.groupid,
            comment: m.comment,
            members: vec![],
        })
    })
    .await?;
    Ok((StatusCode::CREATED, Json(info)).into_response())
}

fn find_group<'a>(cfg: &'a AccessConfig, g: &str) -> Result<&'a GroupMeta> {
    cfg.groups
        .get(g)
        .ok_or_else(|| Error::NotFound(format!("group {g:?} does not exist")))
}

#[utoipa::path(get, path = "/api/v1/access/groups/{groupid}", tag = "access", params(("groupid" = String, Path)),
    responses((status = 200, body = GroupInfo), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_group(Extension(cfg): Cfg, Path(g): Path<String>) -> ApiResult<Json<GroupInfo>> {
    let m = find_group(&cfg, &g)?;
    Ok(Json(group_info(&cfg, &g, m)))
}

#[utoipa::path(put, path = "/api/v1/access/groups/{groupid}", tag = "access", params(("groupid" = String, Path)), request_body = GroupUpdate,
    responses((status = 200, body = GroupInfo), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn update_group(
    State(node): State<Arc<Node>>,
    Extension(cfg): Cfg,
    Path(g): Path<String>,
    JsonBody(req): JsonBody<GroupUpdate>,
) -> ApiResult<Json<GroupInfo>> {
    Ok(Json(
        blocking(move || {
            let mut m = find_group(&cfg, &g)?.clone();
            if let Some(c) = req.comment {
                m.comment = Some(c).filter(|c| !c.is_empty());
            }
            Backend::of(&node).put(&group_key(&g), &serde_json::json!(m))?;
            Ok(group_info(&cfg, &g, &m))
        })
        .await?,
    ))
}

#[utoipa::path(delete, path = "/api/v1/access/groups/{groupid}", tag = "access", params(("groupid" = String, Path)),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete_group(
    State(node): State<Arc<Node>>,
    Extension(cfg): Cfg,
    Path(g): Path<String>,
) -> ApiResult<StatusCode> {
    blocking(move || {
        find_group(&cfg, &g)?;
        let b = Backend::of(&node);
        // members leave it, its ACL entries go with it
        for (u, m) in cfg.users.iter().filter(|(_, m)| m.groups.contains(&g)) {
            let mut m = m.clone();
            m.groups.retain(|x| x != &g);
            b.put(&usermeta_key(u), &serde_json::json!(m))?;
        }
        for e in cfg
            .acl
            .iter()
            .filter(|e| e.ugid_type == UgidType::Group && e.ugid == g)
        {
            b.delete(&acl_key(e))?;
        }
        b.delete(&group_key(&g))?;
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

// ------------------------------------------------------------------ roles

fn all_roles(cfg: &AccessConfig) -> Vec<RoleInfo> {
    let mut out: Vec<RoleInfo> = builtin_roles()
        .into_iter()
        .map(|(n, p, _)| RoleInfo {
            roleid: n.into(),
            privs: p,
            builtin: true,
        })
        .collect();
    out.extend(cfg.roles.iter().map(|(n, p)| RoleInfo {
        roleid: n.clone(),
        privs: p.clone(),
        builtin: false,
    }));
    out
}

#[utoipa::path(get, path = "/api/v1/access/roles", tag = "access",
    responses((status = 200, body = [RoleInfo]), (status = 401, body = ErrorBody)))]
async fn list_roles(Extension(cfg): Cfg) -> Json<Vec<RoleInfo>> {
    Json(all_roles(&cfg))
}

#[utoipa::path(get, path = "/api/v1/access/roles/{roleid}", tag = "access", params(("roleid" = String, Path)),
    responses((status = 200, body = RoleInfo), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_role(Extension(cfg): Cfg, Path(r): Path<String>) -> ApiResult<Json<RoleInfo>> {
    all_roles(&cfg)
        .into_iter()
        .find(|x| x.roleid == r)
        .map(Json)
        .ok_or_else(|| ApiError(Error::NotFound(format!("role {r:?} does not exist"))))
}

#[utoipa::path(post, path = "/api/v1/access/roles", tag = "access", request_body = RoleSpec,
    responses((status = 201, body = RoleInfo), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn create_role(
    State(node): State<Arc<Node>>,
    JsonBody(req): JsonBody<RoleSpec>,
) -> ApiResult<Response> {
    let info = blocking(move || {
        let Some(id) = req.roleid.clone() else {
            return Err(Error::validation("roleid", "a new role needs a roleid"));
        };
        if !valid_groupid(&id) {
            return Err(Error::validation(
                "roleid",
                format!("{id:?} is not a valid role name: 1-64 letters, digits, '-', '_', '.'"),
            ));
        }
        if builtin_role(&id).is_some() {
            return Err(Error::Conflict(format!("{id} is a built-in role")));
        }
        let privs = req.privileges()?;
        Backend::of(&node).create(
            &role_key(&id),
            &serde_json::json!(StoredRole {
                privs: privs.clone()
            }),
            &format!("role {id:?}"),
        )?;
        Ok(RoleInfo {
            roleid: id,
            privs,
            builtin: false,
        })
    })
    .await?;
    Ok((StatusCode::CREATED, Json(info)).into_response())
}

fn custom_role(cfg: &AccessConfig, r: &str) -> Result<()> {
    if builtin_role(r).is_some() {
        return Err(Error::validation(
            "roleid",
            format!("{r} is a built-in role: it cannot be changed or deleted"),
        ));
    }
    if !cfg.roles.contains_key(r) {
        return Err(Error::NotFound(format!("role {r:?} does not exist")));
    }
    Ok(())
}

#[utoipa::path(put, path = "/api/v1/access/roles/{roleid}", tag = "access", params(("roleid" = String, Path)), request_body = RoleSpec,
    responses((status = 200, body = RoleInfo), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn update_role(
    State(node): State<Arc<Node>>,
    Extension(cfg): Cfg,
    Path(r): Path<String>,
    JsonBody(req): JsonBody<RoleSpec>,
) -> ApiResult<Json<RoleInfo>> {
    Ok(Json(
        blocking(move || {
            custom_role(&cfg, &r)?;
            if req.roleid.as_ref().is_some_and(|id| id != &r) {
                return Err(Error::validation("roleid", "a role cannot be renamed"));
            }
            let privs = req.privileges()?;
            Backend::of(&node).put(
                &role_key(&r),
                &serde_json::json!(StoredRole {
                    privs: privs.clone()
                }),
            )?;
            Ok(RoleInfo {
                roleid: r,
                privs,
                builtin: false,
            })
        })
        .await?,
    ))
}

#[utoipa::path(delete, path = "/api/v1/access/roles/{roleid}", tag = "access", params(("roleid" = String, Path)),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete_role(
    State(node): State<Arc<Node>>,
    Extension(cfg): Cfg,
    Path(r): Path<String>,
) -> ApiResult<StatusCode> {
    blocking(move || {
        custom_role(&cfg, &r)?;
        let b = Backend::of(&node);
        for e in cfg.acl.iter().filter(|e| e.roleid == r) {
            b.delete(&acl_key(e))?;
        }
        b.delete(&role_key(&r))?;
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

// ------------------------------------------------------------------ ACL

#[utoipa::path(get, path = "/api/v1/access/acl", tag = "access",
    responses((status = 200, body = [AclEntry]), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_acl(Extension(cfg): Cfg) -> Json<Vec<AclEntry>> {
    Json(cfg.acl.clone())
}

/// Grant (or with `delete`, revoke) a role on a path to users, groups and tokens.
#[utoipa::path(put, path = "/api/v1/access/acl", tag = "access", request_body = AclUpdate,
    responses((status = 200, body = [AclEntry], description = "the ACL after the change"), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn update_acl(
    State(node): State<Arc<Node>>,
    Extension(cfg): Cfg,
    JsonBody(req): JsonBody<AclUpdate>,
) -> ApiResult<Json<Vec<AclEntry>>> {
    Ok(Json(
        blocking(move || {
            req.validate()?;
            if cfg.role_privs(&req.roleid).is_none() {
                return Err(Error::validation(
                    "roleid",
                    format!("role {:?} does not exist", req.roleid),
                ));
            }
            let mut entries = vec![];
            for (i, u) in req.users.iter().enumerate() {
                if !req.delete && !node.auth.user_exists(u)? {
                    return Err(Error::validation(
                        &format!("users[{i}]"),
                        format!("user {u:?} does not exist"),
                    ));
                }
                entries.push((UgidType::User, u.clone()));
            }
            for (i, g) in req.groups.iter().enumerate() {
                if !req.delete && !cfg.groups.contains_key(g) {
                    return Err(Error::validation(
                        &format!("groups[{i}]"),
                        format!("group {g:?} does not exist"),
                    ));
                }
                entries.push((UgidType::Group, g.clone()));
            }
            for (i, t) in req.tokens.iter().enumerate() {
                if !req.delete && !cfg.tokens.get(t).is_some_and(|m| m.privsep) {
                    return Err(Error::validation(
                        &format!("tokens[{i}]"),
                        format!("{t:?} is not an API token with privilege separation (a token without it has its user's privileges)"),
                    ));
                }
                entries.push((UgidType::Token, t.clone()));
            }
            let b = Backend::of(&node);
            for (t, id) in entries {
                let e = AclEntry {
                    path: req.path.clone(),
                    ugid_type: t,
                    ugid: id,
                    roleid: req.roleid.clone(),
                    propagate: req.propagate,
                };
                if req.delete {
                    b.delete(&acl_key(&e))?;
                } else {
                    b.put(&acl_key(&e), &serde_json::json!(e))?;
                }
            }
            Ok(b.load()?.acl)
        })
        .await?,
    ))
}

// ------------------------------------------------------------------ tokens

/// A token with privilege separation must not manage its user's tokens (it could make one
/// without separation, or remove the user's others).
fn no_privsep_token(cfg: &AccessConfig, s: &Subject, what: &str) -> Result<()> {
    if let Some(full) = s.full_tokenid() {
        if cfg.tokens.get(&full).is_some_and(|m| m.privsep) {
            return Err(Error::Forbidden(format!(
                "API token {full} has privilege separation: it cannot {what} tokens (log in as {} instead)",
                s.user
            )));
        }
    }
    Ok(())
}

#[utoipa::path(get, path = "/api/v1/access/tokens", tag = "access",
    responses((status = 200, body = [TokenEntry]), (status = 401, body = ErrorBody)))]
async fn list_tokens(
    State(node): State<Arc<Node>>,
    Extension(cfg): Cfg,
    Extension(s): Extension<Subject>,
) -> ApiResult<Json<Vec<TokenEntry>>> {
    Ok(Json(
        blocking(move || {
            Ok(node
                .auth
                .list_tokens(&s.user)?
                .into_iter()
                .map(|t| {
                    let m = cfg.tokens.get(&t.full_tokenid).cloned().unwrap_or_default();
                    TokenEntry {
                        full_tokenid: t.full_tokenid,
                        comment: t.comment,
                        created: t.created,
                        expire: m.expire,
                        privsep: m.privsep,
                    }
                })
                .collect())
        })
        .await?,
    ))
}

/// Create an API token for the caller. With `privsep` it has only what ACL
/// entries grant the token itself, never more than its user. A token with privilege
/// separation cannot create tokens.
#[utoipa::path(post, path = "/api/v1/access/tokens", tag = "access", request_body = TokenSpec,
    responses((status = 201, body = TokenCreated), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn create_token(
    State(node): State<Arc<Node>>,
    Extension(cfg): Cfg,
    Extension(s): Extension<Subject>,
    JsonBody(req): JsonBody<TokenSpec>,
) -> ApiResult<Response> {
    let t = blocking(move || {
        no_privsep_token(&cfg, &s, "create")?;
        check_expire("expire", req.expire)?;
        let t = node
            .auth
            .create_token(&s.user, &req.tokenid, req.comment.as_deref())?;
        let meta = TokenMeta {
            expire: req.expire.filter(|e| *e > 0),
            privsep: req.privsep,
        };
        if let Err(e) = Backend::of(&node).put(
            &tokenmeta_key(&s.user, &req.tokenid),
            &serde_json::json!(meta),
        ) {
            let _ = node.auth.delete_token(&s.user, &req.tokenid);
            return Err(e);
        }
        Ok(t)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(t)).into_response())
}

#[utoipa::path(delete, path = "/api/v1/access/tokens/{tokenid}", tag = "access", params(("tokenid" = String, Path)),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete_token(
    State(node): State<Arc<Node>>,
    Extension(cfg): Cfg,
    Extension(s): Extension<Subject>,
    Path(tokenid): Path<String>,
) -> ApiResult<StatusCode> {
    blocking(move || {
        no_privsep_token(&cfg, &s, "delete")?;
        node.auth.delete_token(&s.user, &tokenid)?;
        let b = Backend::of(&node);
        b.delete(&tokenmeta_key(&s.user, &tokenid))?;
        let full = format!("{}!{tokenid}", s.user);
        for e in cfg
            .acl
            .iter()
            .filter(|e| e.ugid_type == UgidType::Token && e.ugid == full)
        {
            b.delete(&acl_key(e))?;
        }
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

// ------------------------------------------------------------------ permissions

/// The caller's effective privileges per path (what the web UI uses to hide or disable what
/// the caller may not do).
#[utoipa::path(get, path = "/api/v1/access/permissions", tag = "access", params(PermissionsQuery),
    responses((status = 200, body = Permissions), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn permissions(
    State(node): State<Arc<Node>>,
    Extension(cfg): Cfg,
    Extension(s): Extension<Subject>,
    Query(q): Query<PermissionsQuery>,
) -> ApiResult<Json<Permissions>> {
    let paths: Vec<String> = match q.path {
        Some(p) => {
            check_acl_path(&p).map_err(|m| ApiError(Error::validation("path", m)))?;
            vec![p]
        }
        None => {
            let n = node.clone();
            let (vms, pools) = blocking(move || {
                let vms: Vec<u32> = crate::vms::list(&n)?
                    .into_iter()
                    .filter_map(|v| v.vmid)
                    .collect();
                let pools: Vec<String> = n.hv.list_pools()?.into_iter().map(|p| p.name).collect();
                Ok((vms, pools))
            })
            .await?;
            let mut p: Vec<String> = ["/", "/nodes", "/vms", "/storage", "/cluster", "/access"]
                .iter()
                .map(|s| s.to_string())
                .collect();
            p.push(format!("/nodes/{}", node.cfg.node));
            p.extend(vms.iter().map(|v| format!("/vms/{v}")));
            p.extend(pools.iter().map(|v| format!("/storage/{v}")));
            p.extend(cfg.acl.iter().map(|e| e.path.clone()));
            p.sort();
            p.dedup();
            p
        }
    };
    let mut out: BTreeMap<String, Vec<Privilege>> = BTreeMap::new();
    for p in paths {
        let privs = cfg.privs(&s, &p).into_iter().collect();
        out.insert(p, privs);
    }
    Ok(Json(Permissions {
        userid: s.user.clone(),
        token: s.full_tokenid(),
        paths: out,
    }))
}

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        list_users,
        create_user,
        get_user,
        update_user,
        delete_user,
        list_groups,
        create_group,
        get_group,
        update_group,
        delete_group,
        list_roles,
        create_role,
        get_role,
        update_role,
        delete_role,
        list_acl,
        update_acl,
        list_tokens,
        create_token,
        delete_token,
        permissions
    ),
    components(schemas(
        UserInfo,
        UserCreate,
        UserUpdate,
        GroupInfo,
        GroupCreate,
        GroupUpdate,
        RoleInfo,
        RoleSpec,
        AclEntry,
        AclUpdate,
        UgidType,
        Privilege,
        TokenSpec,
        TokenEntry,
        TokenCreated,
        Permissions
    ))
)]
pub struct AccessDoc;
