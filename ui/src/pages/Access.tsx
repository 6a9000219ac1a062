import { useState } from "preact/hooks";
import { ApiError, del, get, post, put } from "../api";
import { aclPathProblem, expireFromDays, passwordProblem, refreshPermissions, usePermissions, whyNot, type Permissions } from "../access";
import { Empty, ErrorBox, Loading, Tabs } from "../components";
import { usePoll } from "../hooks";
import { formatTime } from "../logic";
import { navigate } from "../router";

interface UserInfo { userid: string; enable: boolean; expire?: number; comment?: string; groups: string[]; created: number }
interface GroupInfo { groupid: string; comment?: string; members: string[] }
interface RoleInfo { roleid: string; privs: string[]; builtin: boolean }
interface AclEntry { path: string; type: "user" | "group" | "token"; ugid: string; roleid: string; propagate: boolean }
interface TokenEntry { full_tokenid: string; comment?: string; created: number; expire?: number; privsep: boolean }

type Tab = "users" | "groups" | "tokens" | "permissions";

/** A button that is disabled, with the reason as its title, when the caller lacks the privilege. */
function Guarded({ perms, priv, path, children, onClick, cls = "btn", type = "button", busy = false }: {
  perms: Permissions | undefined; priv: string; path: string; children: any; onClick?: () => void; cls?: string;
  type?: "button" | "submit"; busy?: boolean;
}) {
  const why = whyNot(perms, priv, path);
  return (
    <button type={type} class={cls} disabled={!!why || busy} title={why ?? undefined} aria-disabled={!!why}
      data-denied={why ? "1" : undefined} onClick={onClick}>{children}</button>
  );
}

function Notice({ msg }: { msg: { tone: string; text: string } | null }) {
  if (!msg) return null;
  return <div class={`alert alert-${msg.tone}`} role={msg.tone === "error" ? "alert" : "status"}>{msg.text}</div>;
}

/** A 403 on a list: say which privilege is missing instead of an error. */
function Denied({ error, what }: { error: ApiError | null; what: string }) {
  if (!error) return null;
  if (error.status === 403) {
    return <p class="muted" data-testid="denied">You may not see {what}: {error.message}</p>;
  }
  return <ErrorBox error={error} title={`Cannot list ${what}`} />;
}

function Users({ perms }: { perms: Permissions | undefined }) {
  const list = usePoll(() => get<UserInfo[]>("/access/users"), 10000);
  const groups = usePoll(() => get<GroupInfo[]>("/access/groups").catch(() => [] as GroupInfo[]), 0);
  const [f, setF] = useState({ userid: "", password: "", groups: "", comment: "" });
  const [msg, setMsg] = useState<{ tone: string; text: string } | null>(null);
  const act = async (what: string, fn: () => Promise<unknown>) => {
    setMsg(null);
    try { await fn(); setMsg({ tone: "info", text: what }); list.refresh(); }
    catch (e) { setMsg({ tone: "error", text: (e as ApiError).message }); }
  };
  const add = (e: Event) => {
    e.preventDefault();
    const gs = f.groups.split(",").map((g) => g.trim()).filter(Boolean);
    act(`User ${f.userid} created.`, () => post("/access/users", { userid: f.userid, password: f.password, groups: gs, comment: f.comment || undefined }))
      .then(() => setF({ userid: "", password: "", groups: "", comment: "" }));
  };
  return (
    <div>
      <Notice msg={msg} />
      <Denied error={list.error} what="users" />
      {!list.data && !list.error && <Loading what="users" />}
      {list.data && (
        <table class="table" aria-label="Users">
          <thead><tr><th>User</th><th>Enabled</th><th>Expires</th><th>Groups</th><th>Comment</th><th /></tr></thead>
          <tbody>{list.data.map((u) => (
            <tr key={u.userid}>
              <td class="mono">{u.userid}</td>
              <td>{u.enable ? "yes" : "no"}</td>
              <td>{u.expire ? formatTime(u.expire) : "never"}</td>
              <td>{u.groups.join(", ")}</td>
              <td>{u.comment ?? ""}</td>
              <td class="num">{u.userid !== "root" && <>
                <Guarded perms={perms} priv="User.Modify" path="/access" cls="btn btn-small"
                  onClick={() => act(`User ${u.userid} ${u.enable ? "disabled" : "enabled"}.`, () => put(`/access/users/${encodeURIComponent(u.userid)}`, { enable: !u.enable }))}>
                  {u.enable ? "Disable" : "Enable"}</Guarded>{" "}
                <Guarded perms={perms} priv="User.Modify" path="/access" cls="btn btn-small btn-danger-outline"
                  onClick={() => { if (confirm(`Delete user ${u.userid} with its tokens and ACL entries?`)) act(`User ${u.userid} deleted.`, () => del(`/access/users/${encodeURIComponent(u.userid)}`)); }}>
                  Delete</Guarded></>}</td>
            </tr>
          ))}</tbody>
        </table>
      )}
      <form class="card form-grid" onSubmit={add} aria-label="Add user">
        <h2>Add user</h2>
        <div class="field-inline"><label for="u-id">User name</label>
          <input id="u-id" value={f.userid} required onInput={(e) => setF({ ...f, userid: e.currentTarget.value })} /></div>
        <div class="field-inline"><label for="u-pw">Password (8+ characters)</label>
          <input id="u-pw" type="password" autocomplete="new-password" minLength={8} required value={f.password} onInput={(e) => setF({ ...f, password: e.currentTarget.value })} /></div>
        <div class="field-inline"><label for="u-groups">Groups (comma-separated)</label>
          <input id="u-groups" value={f.groups} list="group-names" onInput={(e) => setF({ ...f, groups: e.currentTarget.value })} />
          <datalist id="group-names">{(groups.data ?? []).map((g) => <option value={g.groupid} />)}</datalist></div>
        <div class="field-inline"><label for="u-comment">Comment</label>
          <input id="u-comment" value={f.comment} onInput={(e) => setF({ ...f, comment: e.currentTarget.value })} /></div>
        <Guarded perms={perms} priv="User.Modify" path="/access" type="submit" cls="btn btn-primary">Add user</Guarded>
      </form>
    </div>
  );
}

function Groups({ perms }: { perms: Permissions | undefined }) {
  const list = usePoll(() => get<GroupInfo[]>("/access/groups"), 10000);
  const [f, setF] = useState({ groupid: "", comment: "" });
  const [msg, setMsg] = useState<{ tone: string; text: string } | null>(null);
  const act = async (what: string, fn: () => Promise<unknown>) => {
    setMsg(null);
    try { await fn(); setMsg({ tone: "info", text: what }); list.refresh(); }
    catch (e) { setMsg({ tone: "error", text: (e as ApiError).message }); }
  };
  return (
    <div>
      <Notice msg={msg} />
      <Denied error={list.error} what="groups" />
      {list.data && list.data.length === 0 && <Empty title="No groups yet"><p>Groups take ACL entries for all their members; users join them on the Users tab.</p></Empty>}
      {list.data && list.data.length > 0 && (
        <table class="table" aria-label="Groups">
          <thead><tr><th>Group</th><th>Members</th><th>Comment</th><th /></tr></thead>
          <tbody>{list.data.map((g) => (
            <tr key={g.groupid}><td class="mono">{g.groupid}</td><td>{g.members.join(", ")}</td><td>{g.comment ?? ""}</td>
              <td class="num"><Guarded perms={perms} priv="User.Modify" path="/access" cls="btn btn-small btn-danger-outline"
                onClick={() => act(`Group ${g.groupid} deleted.`, () => del(`/access/groups/${encodeURIComponent(g.groupid)}`))}>Delete</Guarded></td></tr>
          ))}</tbody>
        </table>
      )}
      <form class="card form-grid" aria-label="Add group" onSubmit={(e) => {
        e.preventDefault();
        act(`Group ${f.groupid} created.`, () => post("/access/groups", { groupid: f.groupid, comment: f.comment || undefined })).then(() => setF({ groupid: "", comment: "" }));
      }}>
        <h2>Add group</h2>
        <div class="field-inline"><label for="g-id">Group name</label>
          <input id="g-id" required value={f.groupid} onInput={(e) => setF({ ...f, groupid: e.currentTarget.value })} /></div>
        <div class="field-inline"><label for="g-comment">Comment</label>
          <input id="g-comment" value={f.comment} onInput={(e) => setF({ ...f, comment: e.currentTarget.value })} /></div>
        <Guarded perms={perms} priv="User.Modify" path="/access" type="submit" cls="btn btn-primary">Add group</Guarded>
      </form>
    </div>
  );
}

function Tokens({ perms }: { perms: Permissions | undefined }) {
  const list = usePoll(() => get<TokenEntry[]>("/access/tokens"), 10000);
  const [f, setF] = useState({ tokenid: "", comment: "", days: "", privsep: true });
  const [secret, setSecret] = useState<string | null>(null);
  const [msg, setMsg] = useState<{ tone: string; text: string } | null>(null);
  const expire = expireFromDays(f.days);
  const create = async (e: Event) => {
    e.preventDefault();
    setMsg(null);
    setSecret(null);
    if (expire === null) return;
    try {
      const t = await post<{ full_tokenid: string; secret: string }>("/access/tokens",
        { tokenid: f.tokenid, comment: f.comment || undefined, expire, privsep: f.privsep });
      setSecret(`${t.full_tokenid}=${t.secret}`);
      setF({ tokenid: "", comment: "", days: "", privsep: true });
      list.refresh();
    } catch (err) { setMsg({ tone: "error", text: (err as ApiError).message }); }
  };
  return (
    <div>
      <p class="muted">Your API tokens ({perms?.userid ?? "…"}). A token with privilege separation can do nothing until an ACL entry grants it a role, and never more than you.</p>
      <Notice msg={msg} />
      {secret && <div class="alert alert-info" role="status" data-testid="token-secret">Token created. Its secret is shown only now: <code class="mono">KeelAPIToken {secret}</code></div>}
      <ErrorBox error={list.error} title="Cannot list tokens" />
      {list.data && (
        <table class="table" aria-label="API tokens">
          <thead><tr><th>Token</th><th>Created</th><th>Expires</th><th>Privilege separation</th><th>Comment</th><th /></tr></thead>
          <tbody>{list.data.map((t) => (
            <tr key={t.full_tokenid}><td class="mono">{t.full_tokenid}</td><td>{formatTime(t.created)}</td>
              <td>{t.expire ? formatTime(t.expire) : "never"}</td><td>{t.privsep ? "yes" : "no"}</td><td>{t.comment ?? ""}</td>
              <td class="num"><button type="button" class="btn btn-small btn-danger-outline" onClick={async () => {
                try { await del(`/access/tokens/${encodeURIComponent(t.full_tokenid.split("!")[1] ?? "")}`); list.refresh(); }
                catch (err) { setMsg({ tone: "error", text: (err as ApiError).message }); }
              }}>Delete</button></td></tr>
          ))}</tbody>
        </table>
      )}
      <form class="card form-grid" aria-label="Create token" onSubmit={create}>
        <h2>Create token</h2>
        <div class="field-inline"><label for="t-id">Token id</label>
          <input id="t-id" required pattern="[A-Za-z0-9_\-]{1,64}" value={f.tokenid} onInput={(e) => setF({ ...f, tokenid: e.currentTarget.value })} /></div>
        <div class="field-inline"><label for="t-comment">Comment</label>
          <input id="t-comment" value={f.comment} onInput={(e) => setF({ ...f, comment: e.currentTarget.value })} /></div>
        <div class="field-inline"><label for="t-days">Expires after (days, blank = never)</label>
          <input id="t-days" inputMode="numeric" value={f.days} onInput={(e) => setF({ ...f, days: e.currentTarget.value })} />
          {expire === null && <div class="field-error" role="alert">Write a whole number of days (1 or more), or leave it blank.</div>}</div>
        <div class="field-inline"><label><input type="checkbox" checked={f.privsep} onChange={(e) => setF({ ...f, privsep: e.currentTarget.checked })} /> Privilege separation</label></div>
        <button type="submit" class="btn btn-primary" disabled={expire === null}>Create token</button>
      </form>
    </div>
  );
}

function Password({ perms }: { perms: Permissions | undefined }) {
  const [f, setF] = useState({ old: "", pw: "", again: "" });
  const [msg, setMsg] = useState<{ tone: string; text: string } | null>(null);
  const problem = f.pw || f.again ? passwordProblem(f.pw, f.again) : null;
  const change = async (e: Event) => {
    e.preventDefault();
    setMsg(null);
    if (passwordProblem(f.pw, f.again)) return;
    try {
      await put("/access/password", { password: f.pw, old_password: f.old });
      setF({ old: "", pw: "", again: "" });
      setMsg({ tone: "info", text: "Password changed. Your other sessions on this node have ended." });
    } catch (err) { setMsg({ tone: "error", text: (err as ApiError).message }); }
  };
  if (perms?.token) return null; // an API token has no password
  return (
    <form class="card form-grid" aria-label="Change your password" onSubmit={change}>
      <h2>Change your password</h2>
      <Notice msg={msg} />
      <div class="field-inline"><label for="pw-old">Current password</label>
        <input id="pw-old" type="password" autocomplete="current-password" required value={f.old} onInput={(e) => setF({ ...f, old: e.currentTarget.value })} /></div>
      <div class="field-inline"><label for="pw-new">New password</label>
        <input id="pw-new" type="password" autocomplete="new-password" required value={f.pw} onInput={(e) => setF({ ...f, pw: e.currentTarget.value })} /></div>
      <div class="field-inline"><label for="pw-again">New password, again</label>
        <input id="pw-again" type="password" autocomplete="new-password" required value={f.again} onInput={(e) => setF({ ...f, again: e.currentTarget.value })} />
        {problem && <div class="field-error" role="alert">{problem}</div>}</div>
      <button type="submit" class="btn btn-primary" disabled={problem !== null}>Change password</button>
    </form>
  );
}

function AclTab({ perms }: { perms: Permissions | undefined }) {
  const acl = usePoll(() => get<AclEntry[]>("/access/acl"), 10000);
  const roles = usePoll(() => get<RoleInfo[]>("/access/roles"), 0);
  const [f, setF] = useState({ path: "/", roleid: "VMUser", kind: "users", who: "", propagate: true });
  const [msg, setMsg] = useState<{ tone: string; text: string } | null>(null);
  const problem = aclPathProblem(f.path);
  const change = async (body: unknown, what: string) => {
    setMsg(null);
    try { await put("/access/acl", body); setMsg({ tone: "info", text: what }); acl.refresh(); refreshPermissions(true); }
    catch (e) { setMsg({ tone: "error", text: (e as ApiError).message }); }
  };
  const kindKey = (t: AclEntry["type"]) => t === "user" ? "users" : t === "group" ? "groups" : "tokens";
  return (
    <div>
      <Notice msg={msg} />
      <h2 class="section-title">Your privileges</h2>
      {perms && (
        <table class="table" aria-label="Your privileges">
          <thead><tr><th>Path</th><th>Privileges</th></tr></thead>
          <tbody>{Object.entries(perms.paths).map(([p, privs]) => (
            <tr key={p}><td class="mono">{p}</td><td class="small">{privs.length ? privs.join(", ") : <span class="muted">none</span>}</td></tr>
          ))}</tbody>
        </table>
      )}
      <h2 class="section-title">ACL</h2>
      <Denied error={acl.error} what="the ACL" />
      {acl.data && acl.data.length === 0 && <Empty title="No ACL entries"><p>Only root can do anything until a role is granted.</p></Empty>}
      {acl.data && acl.data.length > 0 && (
        <table class="table" aria-label="ACL">
          <thead><tr><th>Path</th><th>Type</th><th>User, group or token</th><th>Role</th><th>Propagate</th><th /></tr></thead>
          <tbody>{acl.data.map((e) => (
            <tr key={`${e.path}|${e.type}|${e.ugid}|${e.roleid}`}>
              <td class="mono">{e.path}</td><td>{e.type}</td><td class="mono">{e.ugid}</td><td>{e.roleid}</td><td>{e.propagate ? "yes" : "no"}</td>
              <td class="num"><Guarded perms={perms} priv="Permissions.Modify" path="/access" cls="btn btn-small btn-danger-outline"
                onClick={() => change({ path: e.path, roleid: e.roleid, [kindKey(e.type)]: [e.ugid], delete: true }, `Revoked ${e.roleid} on ${e.path} from ${e.ugid}.`)}>Revoke</Guarded></td>
            </tr>
          ))}</tbody>
        </table>
      )}
      <form class="card form-grid" aria-label="Grant a role" onSubmit={(e) => {
        e.preventDefault();
        if (problem) return;
        change({ path: f.path, roleid: f.roleid, [f.kind]: [f.who.trim()], propagate: f.propagate }, `Granted ${f.roleid} on ${f.path} to ${f.who.trim()}.`);
      }}>
        <h2>Grant a role</h2>
        <div class="field-inline"><label for="a-path">Path</label>
          <input id="a-path" value={f.path} onInput={(e) => setF({ ...f, path: e.currentTarget.value })} />
          {problem && <div class="field-error" role="alert">{problem}</div>}</div>
        <div class="field-inline"><label for="a-role">Role</label>
          <select id="a-role" value={f.roleid} onChange={(e) => setF({ ...f, roleid: e.currentTarget.value })}>
            {(roles.data ?? []).map((r) => <option value={r.roleid} title={r.privs.join(", ")}>{r.roleid}</option>)}
          </select></div>
        <div class="field-inline"><label for="a-kind">To</label>
          <select id="a-kind" value={f.kind} onChange={(e) => setF({ ...f, kind: e.currentTarget.value })}>
            <option value="users">user</option><option value="groups">group</option><option value="tokens">token (user!id)</option>
          </select></div>
        <div class="field-inline"><label for="a-who">Name</label>
          <input id="a-who" required value={f.who} onInput={(e) => setF({ ...f, who: e.currentTarget.value })} /></div>
        <div class="field-inline"><label><input type="checkbox" checked={f.propagate} onChange={(e) => setF({ ...f, propagate: e.currentTarget.checked })} /> Also below this path</label></div>
        <Guarded perms={perms} priv="Permissions.Modify" path="/access" type="submit" cls="btn btn-primary">Grant</Guarded>
      </form>
    </div>
  );
}

export function Access({ tab }: { tab: string }) {
  const perms = usePermissions();
  const active = (["users", "groups", "tokens", "permissions"].includes(tab) ? tab : "tokens") as Tab;
  const setTab = (t: Tab) => navigate(`/access?tab=${t}`, true);
  return (
    <section aria-labelledby="access-title">
      <div class="page-head"><h1 id="access-title">Access</h1>
        {perms?.token && <span class="muted small">(API token {perms.token})</span>}</div>
      <Tabs<Tab> label="Access sections" active={active} onChange={setTab}
        tabs={[["users", "Users"], ["groups", "Groups"], ["tokens", "Password and API tokens"], ["permissions", "Permissions"]]} />
      <div role="tabpanel" id={`panel-${active}`} aria-labelledby={`tab-${active}`}>
        {active === "users" && <Users perms={perms} />}
        {active === "groups" && <Groups perms={perms} />}
        {active === "tokens" && <><Password perms={perms} /><Tokens perms={perms} /></>}
        {active === "permissions" && <AclTab perms={perms} />}
      </div>
    </section>
  );
}
