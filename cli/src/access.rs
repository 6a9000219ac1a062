//! `keel user …`, `keel group …`, `keel role …`, `keel acl …`, `keel token …`,
//! `keel permissions`: the permission model from a shell (docs/access.md).

use std::io::Read;

use anyhow::{anyhow, bail, Context, Result};
use clap::{ArgGroup, Subcommand};
use keel_api::access::{
    AclEntry, AclUpdate, GroupCreate, GroupInfo, GroupUpdate, Permissions, Privilege, RoleInfo,
    RoleSpec, TokenEntry, TokenSpec, UserCreate, UserInfo, UserUpdate,
};
use keel_api::auth::TokenCreated;
use reqwest::Method;
use serde_json::Value;

use crate::client::Client;
use crate::{output, show};

#[derive(Subcommand, Debug)]
pub enum UserCmd {
    /// List users with their groups and state
    #[command(visible_alias = "ls")]
    List,
    /// Create a user (the password is read from --password-file, '-' for standard input)
    Add {
        userid: String,
        /// File holding the password (at least 8 characters); '-' reads standard input
        #[arg(long, value_name = "FILE")]
        password_file: String,
        /// A group the user belongs to (repeatable)
        #[arg(long = "group", value_name = "GROUP")]
        groups: Vec<String>,
        #[arg(long)]
        comment: Option<String>,
        /// Refuse the account after this long, e.g. 90d, 12h; 'never' [default: never]
        #[arg(long, value_name = "DURATION")]
        expire: Option<String>,
        /// Create it disabled
        #[arg(long)]
        disabled: bool,
    },
    /// Change a user's groups, state, expiry, comment or password
    #[command(group(ArgGroup::new("state").args(["enable", "disable"])))]
    Modify {
        userid: String,
        /// Replace the user's groups (repeatable; --group '' for none)
        #[arg(long = "group", value_name = "GROUP")]
        groups: Vec<String>,
        #[arg(long)]
        enable: bool,
        #[arg(long)]
        disable: bool,
        /// Refuse the account after this long from now, e.g. 90d; 'never' clears it
        #[arg(long, value_name = "DURATION")]
        expire: Option<String>,
        /// '' removes it
        #[arg(long)]
        comment: Option<String>,
        /// Set a new password from this file ('-' for standard input)
        #[arg(long, value_name = "FILE")]
        password_file: Option<String>,
    },
    /// Delete a user with its tokens and ACL entries
    #[command(visible_alias = "rm")]
    Delete { userid: String },
}

#[derive(Subcommand, Debug)]
pub enum GroupCmd {
    /// List groups and their members
    #[command(visible_alias = "ls")]
    List,
    /// Create a group (members are set with `keel user modify --group`)
    Add {
        groupid: String,
        #[arg(long)]
        comment: Option<String>,
    },
    /// Change a group's comment
    Modify {
        groupid: String,
        #[arg(long)]
        comment: String,
    },
    /// Delete a group (its members leave it; its ACL entries go)
    #[command(visible_alias = "rm")]
    Delete { groupid: String },
}

#[derive(Subcommand, Debug)]
pub enum RoleCmd {
    /// List roles (built-in and custom) with their privileges
    #[command(visible_alias = "ls")]
    List,
    /// List the privileges roles are made from
    Privileges,
    /// Create a custom role
    Add {
        roleid: String,
        /// Privileges, comma-separated (see `keel role privileges`)
        #[arg(long, value_delimiter = ',', required = true)]
        privs: Vec<String>,
    },
    /// Replace a custom role's privileges
    Modify {
        roleid: String,
        #[arg(long, value_delimiter = ',', required = true)]
        privs: Vec<String>,
    },
    /// Delete a custom role (its ACL entries go)
    #[command(visible_alias = "rm")]
    Delete { roleid: String },
}

#[derive(clap::Args, Debug)]
#[command(group(ArgGroup::new("who").required(true).multiple(true).args(["users", "groups", "tokens"])))]
pub struct AclArgs {
    /// /, /nodes/{node}, /vms, /vms/{vmid}, /storage, /storage/{pool}, /cluster, /access
    path: String,
    /// Role name (see `keel role list`)
    role: String,
    /// Users, comma-separated
    #[arg(long, value_delimiter = ',', value_name = "USER,...")]
    users: Vec<String>,
    /// Groups, comma-separated
    #[arg(long, value_delimiter = ',', value_name = "GROUP,...")]
    groups: Vec<String>,
    /// Tokens with privilege separation, as user!tokenid, comma-separated
    #[arg(long, value_delimiter = ',', value_name = "USER!TOKENID,...")]
    tokens: Vec<String>,
    /// Apply to this path only, not to the paths below it
    #[arg(long)]
    no_propagate: bool,
}

#[derive(Subcommand, Debug)]
pub enum AclCmd {
    /// List ACL entries
    #[command(visible_alias = "ls")]
    List,
    /// Grant a role on a path: keel acl grant /vms/100 VMUser --users alice
    Grant(AclArgs),
    /// Revoke a role on a path
    Revoke(AclArgs),
}

#[derive(Subcommand, Debug)]
pub enum TokenCmd {
    /// Create an API token (its secret is shown once)
    Create {
        /// Token id: letters, digits, '-', '_'
        id: String,
        #[arg(long)]
        comment: Option<String>,
        /// Refuse the token after this long, e.g. 30d, 12h [default: never]
        #[arg(long, value_name = "DURATION")]
        expire: Option<String>,
        /// Privilege separation: the token gets only what `keel acl grant … --token` gives it,
        /// never more than you
        #[arg(long)]
        privsep: bool,
    },
    /// List your API tokens
    #[command(visible_alias = "ls")]
    List,
    /// Delete an API token
    #[command(visible_alias = "rm")]
    Delete { id: String },
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// `90d` → now + 90 days (Unix seconds); `never`/`0` → 0.
fn expire_at(s: &str) -> Result<i64> {
    if s == "never" || s == "0" {
        return Ok(0);
    }
    let d = keel_api::cluster::parse_duration_s(s).ok_or_else(|| {
        anyhow!("--expire {s:?}: write a duration such as 90d, 12h, 30m, or 'never'")
    })?;
    Ok(now() + d as i64)
}

fn read_password(file: &str) -> Result<String> {
    let mut s = String::new();
    if file == "-" {
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading the password from standard input")?;
    } else {
        s = std::fs::read_to_string(file).with_context(|| format!("reading {file}"))?;
    }
    let pw = s.trim_end_matches(['\n', '\r']).to_string();
    if pw.len() < 8 {
        bail!("the password needs at least 8 characters");
    }
    Ok(pw)
}

fn done(v: Value, json: bool, msg: String) {
    if json {
        if !v.is_null() {
            output::print_json(&v);
        }
    } else {
        println!("{msg}");
    }
}

fn when(t: Option<i64>) -> String {
    t.map(output::time).unwrap_or_else(|| "never".into())
}

fn privs(p: &[Privilege]) -> String {
    if p.is_empty() {
        return "-".into();
    }
    p.iter().map(|x| x.as_str()).collect::<Vec<_>>().join(",")
}

pub async fn user(c: &Client, cmd: UserCmd, json: bool) -> Result<()> {
    match cmd {
        UserCmd::List => show(
            c.get(&["access", "users"], &[]).await?,
            json,
            |us: Vec<UserInfo>| {
                let mut t = output::table(&["USER", "ENABLED", "EXPIRES", "GROUPS", "COMMENT"]);
                for u in us {
                    t.add_row(vec![
                        u.userid,
                        if u.enable { "yes" } else { "no" }.into(),
                        when(u.expire),
                        u.groups.join(","),
                        u.comment.unwrap_or_default(),
                    ]);
                }
                output::print_table(&mut t);
            },
        )?,
        UserCmd::Add {
            userid,
            password_file,
            groups,
            comment,
            expire,
            disabled,
        } => {
            let body = UserCreate {
                userid: userid.clone(),
                password: read_password(&password_file)?,
                groups,
                enable: !disabled,
                expire: expire.as_deref().map(expire_at).transpose()?,
                comment,
            };
            let v = c
                .call(Method::POST, &["access", "users"], &[], Some(&body))
                .await?;
            done(v, json, format!("user {userid} created"));
        }
        UserCmd::Modify {
            userid,
            groups,
            enable,
            disable,
            expire,
            comment,
            password_file,
        } => {
            let body = UserUpdate {
                groups: (!groups.is_empty())
                    .then(|| groups.into_iter().filter(|g| !g.is_empty()).collect()),
                enable: if enable {
                    Some(true)
                } else if disable {
                    Some(false)
                } else {
                    None
                },
                expire: expire.as_deref().map(expire_at).transpose()?,
                comment,
                password: password_file.as_deref().map(read_password).transpose()?,
            };
            let v = c
                .call(Method::PUT, &["access", "users", &userid], &[], Some(&body))
                .await?;
            done(v, json, format!("user {userid} changed"));
        }
        UserCmd::Delete { userid } => {
            let v = c
                .call::<()>(Method::DELETE, &["access", "users", &userid], &[], None)
                .await?;
            done(v, json, format!("user {userid} deleted"));
        }
    }
    Ok(())
}

pub async fn group(c: &Client, cmd: GroupCmd, json: bool) -> Result<()> {
    match cmd {
        GroupCmd::List => show(
            c.get(&["access", "groups"], &[]).await?,
            json,
            |gs: Vec<GroupInfo>| {
                let mut t = output::table(&["GROUP", "MEMBERS", "COMMENT"]);
                for g in gs {
                    t.add_row(vec![
                        g.groupid,
                        g.members.join(","),
                        g.comment.unwrap_or_default(),
                    ]);
                }
                output::print_table(&mut t);
            },
        )?,
        GroupCmd::Add { groupid, comment } => {
            let body = GroupCreate {
                groupid: groupid.clone(),
                comment,
            };
            let v = c
                .call(Method::POST, &["access", "groups"], &[], Some(&body))
                .await?;
            done(v, json, format!("group {groupid} created"));
        }
        GroupCmd::Modify { groupid, comment } => {
            let body = GroupUpdate {
                comment: Some(comment),
            };
            let v = c
                .call(
                    Method::PUT,
                    &["access", "groups", &groupid],
                    &[],
                    Some(&body),
                )
                .await?;
            done(v, json, format!("group {groupid} changed"));
        }
        GroupCmd::Delete { groupid } => {
            let v = c
                .call::<()>(Method::DELETE, &["access", "groups", &groupid], &[], None)
                .await?;
            done(v, json, format!("group {groupid} deleted"));
        }
    }
    Ok(())
}

pub async fn role(c: &Client, cmd: RoleCmd, json: bool) -> Result<()> {
    match cmd {
        RoleCmd::List => show(
            c.get(&["access", "roles"], &[]).await?,
            json,
            |rs: Vec<RoleInfo>| {
                let mut t = output::table(&["ROLE", "KIND", "PRIVILEGES"]);
                for r in rs {
                    t.add_row(vec![
                        r.roleid,
                        if r.builtin { "built-in" } else { "custom" }.into(),
                        privs(&r.privs),
                    ]);
                }
                output::print_table(&mut t);
            },
        )?,
        RoleCmd::Privileges => {
            if json {
                let v: Vec<Value> = Privilege::ALL
                    .iter()
                    .map(|p| serde_json::json!({"privilege": p.as_str(), "description": p.describe()}))
                    .collect();
                output::print_json(&Value::Array(v));
            } else {
                let mut t = output::table(&["PRIVILEGE", "ALLOWS"]);
                for p in Privilege::ALL {
                    t.add_row(vec![p.as_str().to_string(), p.describe().to_string()]);
                }
                output::print_table(&mut t);
            }
        }
        RoleCmd::Add { roleid, privs } => {
            let body = RoleSpec {
                roleid: Some(roleid.clone()),
                privs,
            };
            body.privileges()
                .map_err(|e| anyhow!("--privs: {}", e.message))?;
            let v = c
                .call(Method::POST, &["access", "roles"], &[], Some(&body))
                .await?;
            done(v, json, format!("role {roleid} created"));
        }
        RoleCmd::Modify { roleid, privs } => {
            let body = RoleSpec {
                roleid: None,
                privs,
            };
            body.privileges()
                .map_err(|e| anyhow!("--privs: {}", e.message))?;
            let v = c
                .call(Method::PUT, &["access", "roles", &roleid], &[], Some(&body))
                .await?;
            done(v, json, format!("role {roleid} changed"));
        }
        RoleCmd::Delete { roleid } => {
            let v = c
                .call::<()>(Method::DELETE, &["access", "roles", &roleid], &[], None)
                .await?;
            done(v, json, format!("role {roleid} deleted"));
        }
    }
    Ok(())
}

fn acl_table(es: Vec<AclEntry>) {
    let mut t = output::table(&["PATH", "TYPE", "WHO", "ROLE", "PROPAGATE"]);
    for e in es {
        t.add_row(vec![
            e.path,
            e.ugid_type.as_str().into(),
            e.ugid,
            e.roleid,
            if e.propagate { "yes" } else { "no" }.into(),
        ]);
    }
    output::print_table(&mut t);
}

pub async fn acl(c: &Client, cmd: AclCmd, json: bool) -> Result<()> {
    let (a, delete) = match cmd {
        AclCmd::List => {
            return show(c.get(&["access", "acl"], &[]).await?, json, acl_table);
        }
        AclCmd::Grant(a) => (a, false),
        AclCmd::Revoke(a) => (a, true),
    };
    let body = AclUpdate {
        path: a.path,
        roleid: a.role,
        users: a.users,
        groups: a.groups,
        tokens: a.tokens,
        propagate: !a.no_propagate,
        delete,
    };
    body.validate()
        .map_err(|e| anyhow!("{}: {}", e.field, e.message))?;
    show(
        c.call(Method::PUT, &["access", "acl"], &[], Some(&body))
            .await?,
        json,
        acl_table,
    )
}

pub async fn token(c: &Client, cmd: TokenCmd, json: bool) -> Result<()> {
    match cmd {
        TokenCmd::Create {
            id,
            comment,
            expire,
            privsep,
        } => {
            let body = TokenSpec {
                tokenid: id,
                comment,
                expire: expire.as_deref().map(expire_at).transpose()?,
                privsep,
            };
            let v = c
                .call(Method::POST, &["access", "tokens"], &[], Some(&body))
                .await?;
            show(v, json, |t: TokenCreated| {
                println!("token:  {}", t.full_tokenid);
                println!("secret: {}", t.secret);
                println!();
                println!("The secret is shown only now. Use it as:");
                println!("  export KEEL_TOKEN='{}={}'", t.full_tokenid, t.secret);
                if privsep {
                    println!();
                    println!("It has privilege separation: it can do nothing until granted, e.g.");
                    println!("  keel acl grant /vms VMUser --tokens '{}'", t.full_tokenid);
                }
            })?;
        }
        TokenCmd::List => show(
            c.get(&["access", "tokens"], &[]).await?,
            json,
            |ts: Vec<TokenEntry>| {
                let mut t = output::table(&[
                    "TOKEN",
                    "CREATED (UTC)",
                    "EXPIRES (UTC)",
                    "PRIVSEP",
                    "COMMENT",
                ]);
                for x in ts {
                    t.add_row(vec![
                        x.full_tokenid,
                        output::time(x.created),
                        when(x.expire),
                        if x.privsep { "yes" } else { "no" }.into(),
                        x.comment.unwrap_or_default(),
                    ]);
                }
                output::print_table(&mut t);
            },
        )?,
        TokenCmd::Delete { id } => {
            let v = c
                .call::<()>(Method::DELETE, &["access", "tokens", &id], &[], None)
                .await?;
            done(v, json, format!("token {id} deleted"));
        }
    }
    Ok(())
}

/// `keel permissions [--path P]`: what the caller may do, per path.
pub async fn permissions(c: &Client, path: Option<String>, json: bool) -> Result<()> {
    let q: Vec<(&str, String)> = path.map(|p| ("path", p)).into_iter().collect();
    show(
        c.get(&["access", "permissions"], &q).await?,
        json,
        |p: Permissions| {
            match &p.token {
                Some(t) => println!("API token {t} (user {})", p.userid),
                None => println!("user {}", p.userid),
            }
            let mut t = output::table(&["PATH", "PRIVILEGES"]);
            for (path, ps) in p.paths {
                t.add_row(vec![path, privs(&ps)]);
            }
            output::print_table(&mut t);
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acl_grant_parses() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct T {
            #[command(subcommand)]
            c: AclCmd,
        }
        let t = T::try_parse_from([
            "t",
            "grant",
            "/vms/100",
            "VMUser",
            "--users",
            "alice,bob",
            "--tokens",
            "bob!ci",
        ]);
        match t.map(|t| t.c) {
            Ok(AclCmd::Grant(a)) => {
                assert_eq!(a.users, vec!["alice", "bob"]);
                assert_eq!(a.tokens, vec!["bob!ci"]);
                assert!(!a.no_propagate);
            }
            other => panic!("{other:?}"),
        }
        assert!(T::try_parse_from(["t", "grant", "/", "Auditor"]).is_err());
    }

    #[test]
    fn expiry_durations() {
        assert_eq!(expire_at("never").ok(), Some(0));
        let t = expire_at("1d").unwrap_or(0);
        assert!((t - now() - 86400).abs() <= 1, "{t}");
        assert!(expire_at("soon").is_err());
    }
}
