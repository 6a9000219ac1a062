// This node's backup targets, shown on the Backup jobs page: each with its kind, where it
// writes, whether it is usable now (and why not), free space and, for an sftp target, the
// pinned host key, for an nfs target the export and where this node mounts it; "Add target…"
// (a directory, a remote host over SFTP with a key file and an optional host key fingerprint,
// or an NFS export every node mounts itself, with optional mount options) and remove.
// docs/backups.md.
import { useState } from "preact/hooks";
import { currentNode, del, np, post, type ApiError } from "../api";
import { ErrorBox, Modal } from "../components";
import { usePermissions, whyNot } from "../access";
import { formatBytes } from "../logic";
import { targetNameError, targetPathError, type BackupTarget } from "./Backups";

/** A target as the list returns it; an nfs target's `path` is where the answering node mounts it. */
export type Target = BackupTarget & {
  /** nfs targets: the export (`server:/path`) and the extra mount options given. */
  export?: string; mount_options?: string;
};
type Kind = "dir" | "sftp" | "nfs";

/** Mirrors keel_api::backup::parse_sftp_location: user@host[:port]:/path. */
export function sftpLocationError(s: string): string | null {
  const m = /^([A-Za-z0-9._-]+)@(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::(\d{1,5}))?:(\/.*)$/.exec(s);
  if (!m) return "user@host[:port]:/absolute/path, e.g. backup@nas.example:2222:/srv/keel";
  if (m[3] && (Number(m[3]) < 1 || Number(m[3]) > 65535)) return "The port is a number from 1 to 65535.";
  if (m[4].split("/").includes("..")) return "The path may not hold '..'.";
  return null;
}
/** Mirrors keel_api::backup::valid_ssh_fingerprint. */
export function fingerprintError(s: string): string | null {
  return /^SHA256:[A-Za-z0-9+/]{43}$/.test(s) ? null : "SHA256: and 43 base64 characters, as ssh-keygen -lf prints it.";
}
/** Mirrors keel_api::backup::parse_nfs_source: server:/path, an IPv6 server in brackets. */
export function nfsExportError(s: string): string | null {
  const usage = `${JSON.stringify(s)} is not an NFS export: use server:/path (e.g. nas.example:/srv/keel-backups)`;
  let server: string, exp: string;
  if (s.startsWith("[")) {
    const close = s.indexOf("]");
    if (close < 0 || s[close + 1] !== ":") return usage;
    server = s.slice(1, close);
    exp = s.slice(close + 2);
  } else {
    const colon = s.indexOf(":");
    if (colon < 0) return usage;
    server = s.slice(0, colon);
    exp = s.slice(colon + 1);
  }
  if (!server || server.length > 253 || server.startsWith("-") || !/^[A-Za-z0-9.:-]+$/.test(server))
    return `The server ${JSON.stringify(server)} is not a host name or address.`;
  if (!exp.startsWith("/") || exp.split("/").includes("..") || /[\s,\u0000-\u001f\u007f-\u009f]/.test(exp))
    return `The export ${JSON.stringify(exp)} is not an absolute path (no '..', spaces or commas).`;
  return null;
}
/** The mount options an nfs target may add: keel_api::backup::NFS_OPTIONS. */
export const NFS_OPTIONS = ["vers", "nfsvers", "proto", "port", "sec", "timeo", "retrans", "hard", "soft", "rsize",
  "wsize", "nconnect", "noresvport", "actimeo"];
const NFS_FLAGS = ["hard", "soft", "noresvport"];
/** Mirrors keel_api::backup::check_nfs_options; empty is fine (the options are optional). */
export function nfsOptionsError(s: string): string | null {
  if (!s) return null;
  if (s.length > 256) return "Mount options longer than 256 characters.";
  for (const o of s.split(",")) {
    const eq = o.indexOf("=");
    const k = eq < 0 ? o : o.slice(0, eq);
    const v = eq < 0 ? null : o.slice(eq + 1);
    if (!NFS_OPTIONS.includes(k)) return `Mount option ${JSON.stringify(o)} is not one Keel passes on: use ${NFS_OPTIONS.join(", ")}.`;
    const flag = NFS_FLAGS.includes(k);
    if (flag && v !== null) return `Mount option ${JSON.stringify(o)}: ${k} takes no value.`;
    if (!flag && (v === null || !/^[A-Za-z0-9.:_]+$/.test(v)))
      return `Mount option ${JSON.stringify(o)}: ${k} needs a value (${k}=VALUE, letters, digits, '.', ':', '_').`;
  }
  return null;
}

export function BackupTargetsSection({ targets, onChange }: { targets: { data?: Target[]; error: ApiError | null }; onChange: () => void }) {
  const perms = usePermissions();
  const no = whyNot(perms, "Datastore.Allocate", "/storage");
  const [adding, setAdding] = useState(false);
  const [msg, setMsg] = useState<{ tone: "info" | "error"; text: string } | null>(null);
  const remove = async (name: string) => {
    if (!confirm(`Forget backup target ${name}? Its backups stay where they are.`)) return;
    try { await del(np(`/backup-targets/${encodeURIComponent(name)}`)); setMsg({ tone: "info", text: `Backup target ${name} removed.` }); }
    catch (e) { setMsg({ tone: "error", text: `Cannot remove ${name}: ${(e as ApiError).message}` }); }
    onChange();
  };
  return (
    <section aria-label="Backup targets">
      <h2>Backup targets</h2>
      <div class="toolbar" role="toolbar" aria-label="Backup target actions">
        <button type="button" class="btn" disabled={!!no} title={no ?? "Add a directory, a remote host over SFTP or an NFS export"} onClick={() => setAdding(true)}>Add target…</button>
      </div>
      {msg && <div class={`alert alert-${msg.tone}`} role={msg.tone === "error" ? "alert" : "status"}>{msg.text}</div>}
      <ErrorBox error={targets.error} title="Cannot list backup targets" />
      {targets.data && (targets.data.length === 0 ? <p class="muted">No backup targets on node {currentNode()}.</p> : (
        <table class="table" aria-label="Backup targets">
          <thead><tr><th>Target</th><th>Kind</th><th>Where</th><th>State</th><th>Free</th><th>Host key</th><th title="cluster: defined cluster-wide (state and free space as this node sees them); node: this node only">Defined</th><th /></tr></thead>
          <tbody>{targets.data.map((t) => (
            <tr data-target={t.name}>
              <td class="mono">{t.name}</td>
              <td>{t.kind}</td>
              <td class="mono small">{t.kind === "nfs" && t.export ? <>
                {t.export}
                <div class="muted">mounted at {t.path}</div>
                {t.mount_options && <div class="muted">options {t.mount_options}</div>}
              </> : <>{t.path}{t.key_file && <div class="muted">key {t.key_file}</div>}</>}</td>
              <td data-state={t.ok ? "ok" : "unusable"}>
                <span class={`badge badge-${t.ok ? "ok" : "bad"}`}>{t.ok ? "ok" : "unusable"}</span>
                {t.error && <div class="small field-error">{t.error}</div>}
              </td>
              <td class="nowrap">{t.ok ? `${formatBytes(t.available)} of ${formatBytes(t.total)}` : "-"}</td>
              <td class="mono small" data-fingerprint={t.host_key_fingerprint ?? ""}>{t.host_key_fingerprint ?? "-"}</td>
              <td class="small" data-scope={t.scope ?? "node"}>{t.scope === "cluster" ? "cluster-wide" : "this node"}</td>
              <td><button type="button" class="btn btn-danger" disabled={!!no} title={no ?? "Forget this target (its backups stay)"} onClick={() => remove(t.name)}>Remove</button></td>
            </tr>
          ))}</tbody>
        </table>
      ))}
      {adding && <AddTargetDialog onClose={() => setAdding(false)}
        onAdded={(t) => {
          setAdding(false);
          setMsg({ tone: "info", text: `Backup target ${t.name} added${t.host_key_fingerprint ? `; host key pinned: ${t.host_key_fingerprint}` : ""}.` });
          onChange();
        }} />}
    </section>
  );
}

function AddTargetDialog({ onClose, onAdded }: { onClose: () => void; onAdded: (t: Target) => void }) {
  const [kind, setKind] = useState<Kind>("dir");
  const [name, setName] = useState("");
  const [path, setPath] = useState("");
  const [key, setKey] = useState("");
  const [fp, setFp] = useState("");
  const [opts, setOpts] = useState("");
  const [error, setError] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState(false);
  const nameErr = name ? targetNameError(name) : null;
  const pathErr = path ? (kind === "sftp" ? sftpLocationError(path) : kind === "nfs" ? nfsExportError(path) : targetPathError(path)) : null;
  const keyErr = kind === "sftp" && key && !key.startsWith("/") ? "The absolute path of the private key file on the node." : null;
  const fpErr = kind === "sftp" && fp ? fingerprintError(fp.trim()) : null;
  const optsErr = kind === "nfs" ? nfsOptionsError(opts.trim()) : null;
  const invalid = !name || !path || !!nameErr || !!pathErr || (kind === "sftp" && (!key || !!keyErr || !!fpErr)) || !!optsErr;
  const fieldErr = (f: string) => (error?.field === f ? error.message : null);
  const submit = async (e: Event) => {
    e.preventDefault();
    if (invalid) return;
    setBusy(true);
    setError(null);
    try {
      const body = kind === "sftp"
        ? { name, kind, path, key_file: key, ...(fp.trim() ? { host_key_fingerprint: fp.trim() } : {}) }
        : kind === "nfs"
          ? { name, kind, path, ...(opts.trim() ? { mount_options: opts.trim() } : {}) }
          : { name, kind, path };
      onAdded(await post<Target>(np("/backup-targets"), body));
    } catch (err) {
      setError(err as ApiError);
    }
    setBusy(false);
  };
  return (
    <Modal title="Add backup target" onClose={onClose}>
      <form onSubmit={submit}>
        <div class="field">
          <label for="tgt-kind">Kind</label>
          <select id="tgt-kind" value={kind} onChange={(e) => { setKind(e.currentTarget.value as Kind); setError(null); }}>
            <option value="dir">Directory on this node</option>
            <option value="sftp">Remote host over SFTP</option>
            <option value="nfs">NFS export (mounted by every node)</option>
          </select>
        </div>
        <div class={`field${nameErr ? " has-error" : ""}`}>
          <label for="tgt-name">Target name</label>
          <input id="tgt-name" value={name} autoComplete="off" onInput={(e) => setName(e.currentTarget.value)} />
          {(nameErr || fieldErr("name")) && <div class="field-error" role="alert">{nameErr ?? fieldErr("name")}</div>}
        </div>
        {kind === "nfs" ? <>
          <div class={`field${pathErr ? " has-error" : ""}`}>
            <label for="tgt-export">NFS export</label>
            <input id="tgt-export" value={path} autoComplete="off" placeholder="nas.example:/srv/keel-backups"
              onInput={(e) => setPath(e.currentTarget.value)} />
            <div class="muted small">Every node mounts it at /run/keel/backup-nfs/NAME; root on the nodes must be able to write there (rw,no_root_squash).</div>
            {(pathErr || fieldErr("path")) && <div class="field-error" role="alert">{pathErr ?? fieldErr("path")}</div>}
          </div>
          <div class={`field${optsErr ? " has-error" : ""}`}>
            <label for="tgt-opts">Mount options</label>
            <input id="tgt-opts" value={opts} autoComplete="off" placeholder="vers=4.2" onInput={(e) => setOpts(e.currentTarget.value)} />
            <div class="muted small">Optional, comma-separated: {NFS_OPTIONS.join(", ")}.</div>
            {(optsErr || fieldErr("mount_options")) && <div class="field-error" role="alert">{optsErr ?? fieldErr("mount_options")}</div>}
          </div>
        </> : <div class={`field${pathErr ? " has-error" : ""}`}>
          <label for="tgt-path">{kind === "sftp" ? "Remote location" : "Directory"}</label>
          <input id="tgt-path" value={path} autoComplete="off" placeholder={kind === "sftp" ? "backup@nas.example:22:/srv/keel" : "/srv/backup"}
            onInput={(e) => setPath(e.currentTarget.value)} />
          {(pathErr || fieldErr("path")) && <div class="field-error" role="alert">{pathErr ?? fieldErr("path")}</div>}
        </div>}
        {kind === "sftp" && <>
          <div class={`field${keyErr ? " has-error" : ""}`}>
            <label for="tgt-key">Private key file</label>
            <input id="tgt-key" value={key} autoComplete="off" placeholder="/var/lib/keel/backup-keys/nas" onInput={(e) => setKey(e.currentTarget.value)} />
            <div class="muted small">Read by hostd on this node from its backup-keys directory (/var/lib/keel/backup-keys, mode 0600); its public key goes into the remote user's authorized_keys. No password is ever asked.</div>
            {(keyErr || fieldErr("key_file")) && <div class="field-error" role="alert">{keyErr ?? fieldErr("key_file")}</div>}
          </div>
          <div class={`field${fpErr ? " has-error" : ""}`}>
            <label for="tgt-fp">Host key fingerprint (optional)</label>
            <input id="tgt-fp" value={fp} autoComplete="off" placeholder="SHA256:…" onInput={(e) => setFp(e.currentTarget.value)} />
            <div class="muted small">Empty: the key the host presents now is pinned and shown. A host presenting another key later is refused.</div>
            {(fpErr || fieldErr("host_key_fingerprint")) && <div class="field-error" role="alert">{fpErr ?? fieldErr("host_key_fingerprint")}</div>}
          </div>
        </>}
        {error && !["name", "path", "key_file", "host_key_fingerprint", "mount_options"].includes(error.field ?? "") &&
          <div class="alert alert-error" role="alert">{error.message}</div>}
        <div class="modal-actions">
          <button type="button" class="btn" onClick={onClose}>Cancel</button>
          <button type="submit" class="btn btn-primary" disabled={busy || invalid}>{busy ? "Adding…" : "Add target"}</button>
        </div>
      </form>
    </Modal>
  );
}
