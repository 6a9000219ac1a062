// This node's backup targets, shown on the Backup jobs page: each with its kind, where it
// writes, whether it is usable now (and why not), free space and, for an sftp target, the
// pinned host key; "Add target…" (a directory, or a remote host over SFTP with a key file and
// an optional host key fingerprint) and remove. docs/backups.md.
import { useState } from "preact/hooks";
import { currentNode, del, np, post, type ApiError } from "../api";
import { ErrorBox, Modal } from "../components";
import { usePermissions, whyNot } from "../access";
import { formatBytes } from "../logic";
import { targetNameError, targetPathError, type BackupTarget } from "./Backups";

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

export function BackupTargetsSection({ targets, onChange }: { targets: { data?: BackupTarget[]; error: ApiError | null }; onChange: () => void }) {
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
        <button type="button" class="btn" disabled={!!no} title={no ?? "Add a directory or a remote host over SFTP"} onClick={() => setAdding(true)}>Add target…</button>
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
              <td class="mono small">{t.path}{t.key_file && <div class="muted">key {t.key_file}</div>}</td>
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

function AddTargetDialog({ onClose, onAdded }: { onClose: () => void; onAdded: (t: BackupTarget) => void }) {
  const [kind, setKind] = useState<"dir" | "sftp">("dir");
  const [name, setName] = useState("");
  const [path, setPath] = useState("");
  const [key, setKey] = useState("");
  const [fp, setFp] = useState("");
  const [error, setError] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState(false);
  const nameErr = name ? targetNameError(name) : null;
  const pathErr = path ? (kind === "sftp" ? sftpLocationError(path) : targetPathError(path)) : null;
  const keyErr = kind === "sftp" && key && !key.startsWith("/") ? "The absolute path of the private key file on the node." : null;
  const fpErr = kind === "sftp" && fp ? fingerprintError(fp.trim()) : null;
  const invalid = !name || !path || !!nameErr || !!pathErr || (kind === "sftp" && (!key || !!keyErr || !!fpErr));
  const fieldErr = (f: string) => (error?.field === f ? error.message : null);
  const submit = async (e: Event) => {
    e.preventDefault();
    if (invalid) return;
    setBusy(true);
    setError(null);
    try {
      const body = kind === "sftp"
        ? { name, kind, path, key_file: key, ...(fp.trim() ? { host_key_fingerprint: fp.trim() } : {}) }
        : { name, kind, path };
      onAdded(await post<BackupTarget>(np("/backup-targets"), body));
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
          <select id="tgt-kind" value={kind} onChange={(e) => { setKind(e.currentTarget.value as "dir" | "sftp"); setError(null); }}>
            <option value="dir">Directory on this node</option>
            <option value="sftp">Remote host over SFTP</option>
          </select>
        </div>
        <div class={`field${nameErr ? " has-error" : ""}`}>
          <label for="tgt-name">Target name</label>
          <input id="tgt-name" value={name} autoComplete="off" onInput={(e) => setName(e.currentTarget.value)} />
          {(nameErr || fieldErr("name")) && <div class="field-error" role="alert">{nameErr ?? fieldErr("name")}</div>}
        </div>
        <div class={`field${pathErr ? " has-error" : ""}`}>
          <label for="tgt-path">{kind === "sftp" ? "Remote location" : "Directory"}</label>
          <input id="tgt-path" value={path} autoComplete="off" placeholder={kind === "sftp" ? "backup@nas.example:22:/srv/keel" : "/srv/backup"}
            onInput={(e) => setPath(e.currentTarget.value)} />
          {(pathErr || fieldErr("path")) && <div class="field-error" role="alert">{pathErr ?? fieldErr("path")}</div>}
        </div>
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
        {error && !["name", "path", "key_file", "host_key_fingerprint"].includes(error.field ?? "") &&
          <div class="alert alert-error" role="alert">{error.message}</div>}
        <div class="modal-actions">
          <button type="button" class="btn" onClick={onClose}>Cancel</button>
          <button type="submit" class="btn btn-primary" disabled={busy || invalid}>{busy ? "Adding…" : "Add target"}</button>
        </div>
      </form>
    </Modal>
  );
}
