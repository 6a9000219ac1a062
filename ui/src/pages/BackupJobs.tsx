// The "Backup jobs" page: this node's backup jobs (VMs, target, schedule, retention, next and
// last run), create/edit in a dialog (the schedule checked here with the API's grammar, the
// API's own error shown on its field otherwise), run now and delete. Also the "Prune…" dialog
// of a VM's Backups tab: a dry run's preview (kept/removed with reasons), then the prune task.
// docs/backups.md.
import { useEffect, useState } from "preact/hooks";
import { currentNode, del, get, np, post, put, request, type ApiError } from "../api";
import { ErrorBox, Loading, Modal } from "../components";
import { usePoll } from "../hooks";
import { usePermissions, whyNot } from "../access";
import { formatTime } from "../logic";
import { runShown } from "./Snapshots";
import type { BackupTarget } from "./Backups";
import { BackupTargetsSection } from "./BackupTargets";

export interface KeepPolicy {
  keep_last?: number; keep_hourly?: number; keep_daily?: number; keep_weekly?: number; keep_monthly?: number; keep_yearly?: number;
}
export interface BackupJobConfig {
  id: string; vms: number[]; all_vms: boolean; target: string; schedule: string;
  full_every?: number; retention?: KeepPolicy; enabled: boolean; mode?: "backup" | "verify";
}
export interface JobRun { time: number; upid: string; state: string; message?: string }
export interface BackupJob {
  config: BackupJobConfig; next_run?: number;
  last_run?: JobRun;
  /** A cluster job: every node's last run (each node backs up the VMs it holds). */
  node_runs?: (JobRun & { node: string })[];
  /** Where the definition lives: the cluster's config store or this node's database. */
  scope?: "cluster" | "node";
}
interface PruneEntry { id: string; kind: string; start_time: number; reason: string }
interface PruneResult { kept: PruneEntry[]; removed: PruneEntry[] }

const KEEPS: [keyof KeepPolicy, string][] = [
  ["keep_last", "Keep last"], ["keep_hourly", "Hourly"], ["keep_daily", "Daily"],
  ["keep_weekly", "Weekly"], ["keep_monthly", "Monthly"], ["keep_yearly", "Yearly"],
];
const DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const FULL_DAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"];

function valuesError(s: string, max: number, what: string): string | null {
  if (!s) return `${what}: empty`;
  for (const part of s.split(",")) {
    const [range, step, extra] = part.split("/");
    if (extra !== undefined) return `${what} "${s}": one "/" per item`;
    const num = (x: string) => /^\d+$/.test(x) && Number(x) <= max;
    if (step !== undefined && (!num(step) || Number(step) === 0)) return `${what} "${s}": a step from 1 to ${max}`;
    const bounds = range === "*" ? [] : range.split("..");
    if (bounds.length > 2 || !bounds.every(num)) return `${what} "${s}": use *, N, N..M, N/STEP or */STEP with values 0-${max}`;
    if (bounds.length === 2 && Number(bounds[0]) > Number(bounds[1])) return `${what} "${s}": the range runs backwards`;
  }
  return null;
}
function dayIndex(d: string): number {
  const l = d.toLowerCase();
  const i = DAYS.indexOf(l);
  return i >= 0 ? i : l.length > 3 ? FULL_DAYS.findIndex((f) => f.startsWith(l)) : -1;
}
/** Mirrors hostd's schedule grammar (hostd/src/backup/schedule.rs); null when valid. */
export function scheduleError(text: string): string | null {
  const s = text.trim();
  if (!s) return "Give a schedule, e.g. daily, sat 02:30, mon..fri 21:00 or *:0/15.";
  if (["minutely", "hourly", "daily", "weekly", "monthly"].includes(s.toLowerCase())) return null;
  const parts = s.split(/\s+/);
  const isDays = (p: string) => /^[A-Za-z]/.test(p);
  let days: string | undefined, time: string | undefined;
  if (parts.length === 1) { if (isDays(parts[0])) days = parts[0]; else time = parts[0]; }
  else if (parts.length === 2 && isDays(parts[0])) { days = parts[0]; time = parts[1]; }
  else return "Not understood: give [WEEKDAYS] [HOURS:]MINUTES (e.g. sat 02:30) or daily, hourly, weekly, monthly, minutely.";
  if (days) {
    for (const part of days.split(",")) {
      const r = part.split("..");
      if (r.length > 2) return `"${part}" is not a weekday range`;
      for (const d of r) if (dayIndex(d) < 0) return `"${d}" is not a weekday: use mon, tue, wed, thu, fri, sat, sun (ranges like mon..fri)`;
      if (r.length === 2 && dayIndex(r[0]) > dayIndex(r[1])) return `The weekday range "${part}" runs backwards (Monday first, e.g. mon..fri)`;
    }
  }
  if (time) {
    const hm = time.split(":");
    if (hm.length > 2) return `"${time}" is not a time: HOURS:MINUTES`;
    if (hm.length === 2) return valuesError(hm[0], 23, "hours") ?? valuesError(hm[1], 59, "minutes");
    return valuesError(hm[0], 59, "minutes");
  }
  return null;
}

/** The runs the "Last run" cell shows: a cluster job's last run on every node that ran it (by
 *  node name), a node's job its one last run (no node name). */
export function lastRuns(j: BackupJob): (JobRun & { node?: string })[] {
  if (j.node_runs?.length) return [...j.node_runs].sort((a, b) => a.node.localeCompare(b.node));
  return j.last_run ? [j.last_run] : [];
}

function keepText(k?: KeepPolicy): string {
  if (!k) return "keep all";
  return KEEPS.filter(([f]) => k[f]).map(([f, l]) => `${l.replace("Keep last", "last").toLowerCase()} ${k[f]}`).join(", ");
}

type Msg = { tone: "info" | "error"; text: string } | null;

export function BackupJobs() {
  const jobs = usePoll(() => get<BackupJob[]>(np("/backup-jobs")), 3000, []);
  const targets = usePoll(() => get<BackupTarget[]>(np("/backup-targets")), 0, []);
  const perms = usePermissions();
  const no = whyNot(perms, "Sys.Modify", `/nodes/${currentNode()}`);
  const [msg, setMsg] = useState<Msg>(null);
  const [busy, setBusy] = useState(false);
  const [editing, setEditing] = useState<BackupJobConfig | "new" | null>(null);
  const run = async (id: string) => {
    setBusy(true);
    await runShown(`Backup job ${id}`, "POST", np(`/backup-jobs/${encodeURIComponent(id)}/run`), undefined, setMsg);
    setBusy(false);
    jobs.refresh();
  };
  const remove = async (id: string) => {
    if (!confirm(`Remove backup job ${id}? Its backups stay on the target.`)) return;
    try { await del(np(`/backup-jobs/${encodeURIComponent(id)}`)); setMsg({ tone: "info", text: `Backup job ${id} removed.` }); }
    catch (e) { setMsg({ tone: "error", text: `Cannot remove ${id}: ${(e as ApiError).message}` }); }
    jobs.refresh();
  };
  return (
    <div>
      <h1>Backup jobs</h1>
      <p class="muted small">Scheduled backups of this node's VMs, pruned by each job's retention after every backup (docs/backups.md).</p>
      <div class="toolbar" role="toolbar" aria-label="Backup job actions">
        <button type="button" class="btn btn-primary" disabled={!!no || !targets.data?.length}
          title={no ?? (targets.data?.length ? "Define a backup job" : "Add a backup target first (Backup targets below, or keel backup target add)")}
          onClick={() => setEditing("new")}>New job…</button>
      </div>
      {msg && <div class={`alert alert-${msg.tone}`} role={msg.tone === "error" ? "alert" : "status"} aria-label="Backup job task">{msg.text}</div>}
      <ErrorBox error={jobs.error} title="Cannot list backup jobs" />
      {!jobs.data ? (!jobs.error && <Loading what="backup jobs" />) : jobs.data.length === 0 ? <p class="muted">No backup jobs on this node.</p> : (
        <table class="table" aria-label="Backup jobs">
          <thead><tr><th>Job</th><th>VMs</th><th>Target</th><th>Schedule</th><th>Retention</th><th>Next run</th><th>Last run</th><th title="cluster: defined cluster-wide, run by the node holding each VM (next run: this node's; last run: every node's); node: this node only">Defined</th><th /></tr></thead>
          <tbody>{jobs.data.map((j) => {
            const c = j.config;
            return (
              <tr data-job={c.id}>
                <td class="mono">{c.id}{c.mode === "verify" && <>{" "}<span class="badge badge-info" title="Makes no backups: re-reads and checks every stored file of the VMs' backups">verify</span></>}</td>
                <td>{c.all_vms ? "all" : c.vms.join(", ")}</td>
                <td>{c.target}</td>
                <td class="mono">{c.schedule}{c.full_every ? <span class="muted small"> (full every {c.full_every})</span> : ""}</td>
                <td class="small">{keepText(c.retention)}</td>
                <td class="nowrap" data-next>{c.enabled ? (j.next_run ? formatTime(j.next_run) : "-") : <span class="badge badge-off">disabled</span>}</td>
                <td data-last={j.last_run?.state ?? "none"}>
                  {lastRuns(j).length ? lastRuns(j).map((r) => (
                    <div data-run-node={r.node}>
                      {r.node && <span class="mono small">{r.node}: </span>}
                      <span class={`badge badge-${r.state === "ok" ? "ok" : r.state === "error" ? "bad" : "info"}`}>{r.state}</span>{" "}
                      <a href={`/tasks?upid=${encodeURIComponent(r.upid)}`} class="small">{formatTime(r.time)}</a>
                      {r.state === "error" && r.message && <div class="small field-error">{r.message}</div>}
                    </div>
                  )) : <span class="muted">never</span>}
                </td>
                <td class="small" data-scope={j.scope ?? "node"}>{j.scope === "cluster" ? "cluster-wide" : "this node"}</td>
                <td class="nowrap">
                  <button type="button" class="btn" disabled={busy || !!no} title={no ?? "Run this job now"} onClick={() => run(c.id)}>Run now</button>{" "}
                  <button type="button" class="btn" disabled={!!no} title={no ?? "Change this job"} onClick={() => setEditing(c)}>Edit…</button>{" "}
                  <button type="button" class="btn btn-danger" disabled={!!no} title={no ?? "Remove this job (its backups stay)"} onClick={() => remove(c.id)}>Delete</button>
                </td>
              </tr>
            );
          })}</tbody>
        </table>
      )}
      {editing && targets.data && <JobDialog job={editing === "new" ? null : editing} targets={targets.data}
        onClose={() => setEditing(null)} onSaved={(id) => { setEditing(null); setMsg({ tone: "info", text: `Backup job ${id} saved.` }); jobs.refresh(); }} />}
      <BackupTargetsSection targets={targets} onChange={targets.refresh} />
    </div>
  );
}

function KeepFields({ keep, setKeep, prefix }: { keep: Record<string, string>; setKeep: (k: Record<string, string>) => void; prefix: string }) {
  return (
    <fieldset style={{ marginBottom: "8px" }}><legend class="small">Retention (empty: keep all)</legend>
      <div style={{ display: "grid", gridTemplateColumns: "repeat(3, 1fr)", gap: "4px 12px" }}>
        {KEEPS.map(([f, label]) => (
          <div class="field" style={{ marginBottom: "4px" }}>
            <label for={`${prefix}-${f}`}>{label}</label>
            <input id={`${prefix}-${f}`} inputMode="numeric" value={keep[f] ?? ""}
              onInput={(e) => setKeep({ ...keep, [f]: e.currentTarget.value })} />
          </div>
        ))}
      </div>
    </fieldset>
  );
}

function keepFrom(k: Record<string, string>): { policy?: KeepPolicy; error?: string } {
  const p: KeepPolicy = {};
  for (const [f, label] of KEEPS) {
    const v = (k[f] ?? "").trim();
    if (!v) continue;
    if (!/^\d+$/.test(v) || Number(v) > 10000) return { error: `${label}: a number from 0 to 10000` };
    p[f] = Number(v);
  }
  return Object.values(p).some((n) => n && n > 0) ? { policy: p } : {};
}

function JobDialog({ job, targets, onClose, onSaved }: {
  job: BackupJobConfig | null; targets: BackupTarget[]; onClose: () => void; onSaved: (id: string) => void;
}) {
  const [id, setId] = useState(job?.id ?? "");
  const [all, setAll] = useState(job?.all_vms ?? false);
  const [vms, setVms] = useState(job?.vms.join(", ") ?? "");
  const [target, setTarget] = useState(job?.target ?? targets[0]?.name ?? "");
  const [schedule, setSchedule] = useState(job?.schedule ?? "daily");
  const [fullEvery, setFullEvery] = useState(job?.full_every ? String(job.full_every) : "");
  const [enabled, setEnabled] = useState(job?.enabled ?? true);
  const [mode, setMode] = useState<"backup" | "verify">(job?.mode ?? "backup");
  const verify = mode === "verify";
  const [keep, setKeep] = useState<Record<string, string>>(
    Object.fromEntries(KEEPS.map(([f]) => [f, job?.retention?.[f] != null ? String(job.retention[f]) : ""])));
  const [error, setError] = useState<{ field?: string; message: string } | null>(null);
  const [busy, setBusy] = useState(false);
  const schedErr = scheduleError(schedule);
  const idErr = id && !/^[A-Za-z0-9_-]{1,64}$/.test(id) ? "Letters, digits, '-' and '_' only; 1 to 64 characters." : null;
  const vmList = vms.split(/[\s,]+/).filter(Boolean);
  const vmErr = !all && vmList.some((v) => !/^\d+$/.test(v)) ? "VM IDs, separated by commas." : null;
  const k: ReturnType<typeof keepFrom> = verify ? {} : keepFrom(keep);
  const fullErr = fullEvery && (!/^\d+$/.test(fullEvery) || Number(fullEvery) < 1 || Number(fullEvery) > 1000) ? "A number from 1 to 1000." : null;
  const invalid = !id || !!idErr || !!schedErr || !!vmErr || (!all && vmList.length === 0) || !!k.error || (!!fullErr && !verify) || !target;
  const submit = async (e: Event) => {
    e.preventDefault();
    if (invalid) return;
    const body: BackupJobConfig = {
      id, vms: all ? [] : vmList.map(Number), all_vms: all, target, schedule: schedule.trim(), enabled,
      ...(fullEvery && !verify ? { full_every: Number(fullEvery) } : {}), ...(k.policy ? { retention: k.policy } : {}),
      ...(verify ? { mode: "verify" as const } : {}),
    };
    setBusy(true);
    setError(null);
    try {
      if (job) await put(np(`/backup-jobs/${encodeURIComponent(job.id)}`), body);
      else await post(np("/backup-jobs"), body);
      onSaved(id);
    } catch (err) {
      const a = err as ApiError;
      setError({ field: a.field, message: a.message });
    }
    setBusy(false);
  };
  const fieldErr = (f: string) => error?.field === f || error?.field?.startsWith(`${f}.`) ? error.message : null;
  return (
    <Modal title={job ? `Edit backup job ${job.id}` : "New backup job"} onClose={onClose}>
      <form aria-label="Backup job" onSubmit={submit}>
        <div class={`field${idErr ? " has-error" : ""}`}>
          <label for="job-id">Job ID</label>
          <input id="job-id" value={id} disabled={!!job} autoComplete="off" onInput={(e) => setId(e.currentTarget.value)} />
          {(idErr ?? fieldErr("id")) && <div class="field-error" role="alert">{idErr ?? fieldErr("id")}</div>}
        </div>
        <label class="check"><input type="checkbox" id="job-all" checked={all} onChange={(e) => setAll(e.currentTarget.checked)} />{" "}Every VM of the node</label>
        {!all && <div class={`field${vmErr || fieldErr("vms") ? " has-error" : ""}`}>
          <label for="job-vms">VMs</label>
          <input id="job-vms" value={vms} placeholder="100, 101" onInput={(e) => setVms(e.currentTarget.value)} />
          {(vmErr ?? fieldErr("vms")) && <div class="field-error" role="alert">{vmErr ?? fieldErr("vms")}</div>}
        </div>}
        <div class="field">
          <label for="job-target">Target</label>
          <select id="job-target" value={target} onChange={(e) => setTarget(e.currentTarget.value)}>
            {targets.map((t) => <option value={t.name}>{t.name} ({t.path})</option>)}
          </select>
          {fieldErr("target") && <div class="field-error" role="alert">{fieldErr("target")}</div>}
        </div>
        <div class={`field${schedErr || fieldErr("schedule") ? " has-error" : ""}`}>
          <label for="job-schedule">Schedule</label>
          <input id="job-schedule" value={schedule} autoComplete="off" onInput={(e) => setSchedule(e.currentTarget.value)} />
          {(schedErr ?? fieldErr("schedule"))
            ? <div class="field-error" role="alert">{schedErr ?? fieldErr("schedule")}</div>
            : <div class="hint">Local time: daily, hourly, weekly, monthly, sat 02:30, mon..fri 21:00, *:0/15</div>}
        </div>
        <div class="field">
          <label for="job-mode">What it does</label>
          <select id="job-mode" value={mode} onChange={(e) => setMode(e.currentTarget.value as "backup" | "verify")}>
            <option value="backup">Back up (then apply the retention policy)</option>
            <option value="verify">Verify the stored backups (re-read every file, make none)</option>
          </select>
        </div>
        {!verify && <>
          <div class={`field${fullErr ? " has-error" : ""}`}>
            <label for="job-full-every">Full backup every N runs (optional)</label>
            <input id="job-full-every" inputMode="numeric" value={fullEvery} onInput={(e) => setFullEvery(e.currentTarget.value)} />
            {fullErr && <div class="field-error" role="alert">{fullErr}</div>}
          </div>
          <KeepFields keep={keep} setKeep={setKeep} prefix="job" />
        </>}
        {(k.error ?? fieldErr("retention")) && <div class="field-error" role="alert">{k.error ?? fieldErr("retention")}</div>}
        <label class="check"><input type="checkbox" id="job-enabled" checked={enabled} onChange={(e) => setEnabled(e.currentTarget.checked)} />{" "}Run on schedule</label>
        {error && !["id", "vms", "target", "schedule"].includes(error.field ?? "") && !error.field?.startsWith("retention") &&
          <div class="alert alert-error" role="alert">{error.message}</div>}
        <div class="modal-actions">
          <button type="button" class="btn" onClick={onClose}>Cancel</button>
          <button type="submit" class="btn btn-primary" disabled={busy || invalid}>Save</button>
        </div>
      </form>
    </Modal>
  );
}

/** The Backups tab's "Prune…": a dry run's preview, then the prune task on confirmation. */
export function PruneDialog({ vmid, targets, onClose, onDone }: {
  vmid: number; targets: BackupTarget[]; onClose: () => void; onDone: () => void;
}) {
  const [target, setTarget] = useState(targets[0]?.name ?? "");
  const [keep, setKeep] = useState<Record<string, string>>({ keep_last: "3" });
  const [preview, setPreview] = useState<PruneResult | null>(null);
  const [msg, setMsg] = useState<Msg>(null);
  const [busy, setBusy] = useState(false);
  const k = keepFrom(keep);
  useEffect(() => setPreview(null), [target, JSON.stringify(keep)]);
  const body = (dry: boolean) => ({ target, ...(k.policy ?? {}), dry_run: dry });
  const path = np(`/vms/${vmid}/backups/prune`);
  const dry = async () => {
    setMsg(null);
    try { setPreview(await request("POST", path, body(true))); }
    catch (e) { setMsg({ tone: "error", text: (e as ApiError).message }); }
  };
  const go = async () => {
    setBusy(true);
    const ok = await runShown(`Prune on ${target}`, "POST", path, body(false), setMsg);
    setBusy(false);
    onDone();
    if (ok) onClose();
  };
  return (
    <Modal title={`Prune backups of VM ${vmid}`} onClose={onClose}>
      <div class="field">
        <label for="prune-target">Target</label>
        <select id="prune-target" value={target} onChange={(e) => setTarget(e.currentTarget.value)}>
          {targets.map((t) => <option value={t.name}>{t.name}</option>)}
        </select>
      </div>
      <KeepFields keep={keep} setKeep={setKeep} prefix="prune" />
      <p class="muted small">A backup is kept when a rule selects it or a kept incremental depends on it.</p>
      {k.error && <div class="field-error" role="alert">{k.error}</div>}
      {!k.error && !k.policy && <div class="field-error" role="alert">Give at least one rule above 0 (a policy keeping nothing would delete every backup).</div>}
      {preview && (
        <table class="table" aria-label="Prune preview">
          <thead><tr><th>Backup</th><th>Taken</th><th>Kind</th><th>Action</th><th>Why</th></tr></thead>
          <tbody>{[...preview.kept.map((e) => [e, "keep"] as const), ...preview.removed.map((e) => [e, "remove"] as const)]
            .sort((a, b) => b[0].start_time - a[0].start_time || b[0].id.localeCompare(a[0].id))
            .map(([e, a]) => (
              <tr data-prune={a}><td class="mono">{e.id}</td><td class="nowrap">{formatTime(e.start_time)}</td><td>{e.kind}</td>
                <td><span class={`badge badge-${a === "keep" ? "ok" : "bad"}`}>{a}</span></td><td class="small">{e.reason}</td></tr>
            ))}</tbody>
        </table>
      )}
      {msg && <div class={`alert alert-${msg.tone}`} role={msg.tone === "error" ? "alert" : "status"}>{msg.text}</div>}
      <div class="modal-actions">
        <button type="button" class="btn" onClick={onClose}>Cancel</button>
        <button type="button" class="btn" disabled={busy || !k.policy || !target} onClick={dry}>Preview</button>
        <button type="button" class="btn btn-danger" disabled={busy || !preview}
          title={preview ? `Remove ${preview.removed.length} backup(s)` : "Preview first"} onClick={go}>
          {preview ? `Prune (remove ${preview.removed.length})` : "Prune"}</button>
      </div>
    </Modal>
  );
}
