import { useRef, useState } from "preact/hooks";
import { ApiError, del, followTask, get, notifyTask, np, upload } from "../api";
import { Empty, ErrorBox, Loading, Modal, UsageBar } from "../components";
import { usePoll } from "../hooks";
import { usePermissions, whyNot } from "../access";
import { formatBytes, percent, uploadNameProblem, uploadRefusal } from "../logic";

import type { PoolInfo, TaskRef, VolumeInfo } from "../types";
import { ClusterPools } from "./ClusterPools";
import { CreateLocalPool, DeleteLocalPool } from "./LocalPools";
import { navigate } from "../router";

export function Storage({ pool }: { pool: string | null }) {
  const pools = usePoll(() => get<PoolInfo[]>(np("/storage")), 10000);
  const current = pool ?? (pools.data?.some((p) => p.name === "local") ? "local" : pools.data?.[0]?.name) ?? null;
  const vols = usePoll(
    () => current ? get<VolumeInfo[]>(np(`/storage/${encodeURIComponent(current)}/content`)) : Promise.resolve([] as VolumeInfo[]),
    10000, [current]);
  const [toDelete, setToDelete] = useState<VolumeInfo | null>(null);
  const [creating, setCreating] = useState(false);
  const [poolToDelete, setPoolToDelete] = useState<PoolInfo | null>(null);
  const perms = usePermissions();
  const noDelete = current ? whyNot(perms, "Datastore.Allocate", `/storage/${current}`) : null;
  const noCreate = whyNot(perms, "Datastore.Allocate", "/storage");
  const currentPool = pools.data?.find((p) => p.name === current) ?? null;
  // lvm-thin and iscsi-lvm pools (no directory) hold raw LVs only: nothing is uploaded there
  const noUpload = currentPool ? uploadRefusal(currentPool) : null;
  return (
    <section aria-labelledby="st-title">
      <div class="page-head"><h1 id="st-title">Storage</h1>
        <button type="button" class="btn btn-primary" disabled={!!noCreate} title={noCreate ?? undefined}
          onClick={() => setCreating(true)}>Create pool…</button></div>
      <ErrorBox error={pools.error} title="Cannot list pools" />
      {!pools.data && !pools.error && <Loading what="pools" />}
      {pools.data && pools.data.length === 0 && <Empty title="No storage pools">hostd creates the <code>local</code> pool on start; check its log.</Empty>}
      {pools.data && pools.data.length > 0 && (
        <table class="table" aria-label="Storage pools">
          <thead><tr><th>Pool</th><th>Type</th><th>Path</th><th>State</th><th class="w-usage">Usage</th><th class="num">Free</th></tr></thead>
          <tbody>{pools.data.map((p) => (
            <tr class={p.name === current ? "selected" : ""}>
              <td><a href={`/storage?pool=${encodeURIComponent(p.name)}`} aria-current={p.name === current ? "true" : undefined}>{p.name}</a></td>
              <td>{p.kind}</td><td class="mono small">{p.path ?? "—"}</td>
              <td>{p.active ? <span class="badge badge-ok">Active</span> : <span class="badge badge-off">Inactive</span>}</td>
              <td><UsageBar used={p.allocation} total={p.capacity} label={`Pool ${p.name} used`} />
                <span class="small muted">{formatBytes(p.allocation)} of {formatBytes(p.capacity)} ({percent(p.allocation, p.capacity).toFixed(0)}%)</span></td>
              <td class="num">{formatBytes(p.available)}</td>
            </tr>
          ))}</tbody>
        </table>
      )}
      <ClusterPools />
      {current && (
        <>
          <div class="panel-head section-gap"><h2>Volumes in {current}</h2>
            {currentPool && current !== "local" && (currentPool.kind === "lvm-thin" || currentPool.kind === "dir") &&
              <button type="button" class="btn btn-sm btn-danger-outline" aria-label={`Delete pool ${current}`}
                disabled={!!noDelete} title={noDelete ?? "Cluster and shared pools are refused here: they have their own Delete"}
                onClick={() => setPoolToDelete(currentPool)}>Delete pool</button>}</div>
          {noUpload
            ? <p class="small muted">{noUpload}</p>
            : <Upload key={current} pool={current} onDone={vols.refresh} denied={whyNot(perms, "Datastore.AllocateSpace", `/storage/${current}`)} />}
          <ErrorBox error={vols.error} title="Cannot list volumes" />
          {vols.data && vols.data.length === 0 && <Empty title="This pool is empty">{noUpload ? "Create a VM with a new raw disk here, or add one to a VM." : "Upload an ISO above, or create a VM with a new disk."}</Empty>}
          {vols.data && vols.data.length > 0 && (
            <table class="table" aria-label={`Volumes in ${current}`}>
              <thead><tr><th>Name</th><th>Format</th><th class="num">Size</th><th class="num">Allocated</th><th>Used by</th><th><span class="sr-only">Actions</span></th></tr></thead>
              <tbody>{vols.data.map((v) => (
                <tr><td class="mono">{v.name}</td><td>{v.format}</td><td class="num">{formatBytes(v.capacity)}</td><td class="num">{formatBytes(v.allocation)}</td>
                  <td class="small" data-testid={`used-by-${v.name}`}>{v.used_by?.length ? v.used_by.join(", ") : <span class="muted">—</span>}</td>
                  <td class="actions"><button type="button" class="btn btn-sm btn-danger-outline" aria-label={`Delete volume ${v.name}`}
                    disabled={!!noDelete || !!v.used_by?.length}
                    title={noDelete ?? (v.used_by?.length ? `Used by ${v.used_by.join(", ")}: detach it or delete the VM first` : undefined)}
                    onClick={() => setToDelete(v)}>Delete</button></td></tr>
              ))}</tbody>
            </table>
          )}
        </>
      )}
      {creating && <CreateLocalPool onClose={() => setCreating(false)}
        onDone={(name) => { setCreating(false); pools.refresh(); navigate(`/storage?pool=${encodeURIComponent(name)}`); }} />}
      {poolToDelete && <DeleteLocalPool pool={poolToDelete} onClose={() => setPoolToDelete(null)}
        onDone={() => { setPoolToDelete(null); pools.refresh(); navigate("/storage"); }} />}
      {toDelete && current && <DeleteVolume pool={current} vol={toDelete} onClose={() => { setToDelete(null); vols.refresh(); pools.refresh(); }} />}
    </section>
  );
}

function Upload({ pool, onDone, denied = null }: { pool: string; onDone: () => void; denied?: string | null }) {
  const fileRef = useRef<HTMLInputElement>(null);
  const [file, setFile] = useState<File | null>(null);
  const [progress, setProgress] = useState<number | null>(null);
  const [msg, setMsg] = useState<{ tone: string; text: string } | null>(null);
  const [xhr, setXhr] = useState<{ abort: () => void } | null>(null);
  const problem = file ? uploadNameProblem(file.name) : null;
  const start = async (e: Event) => {
    e.preventDefault();
    if (!file || problem) return;
    setMsg(null);
    setProgress(0);
    const p = upload(pool, file, (l, t) => setProgress(percent(l, t)));
    setXhr(p);
    try {
      const r: TaskRef = await p;
      notifyTask(r.upid);
      setMsg({ tone: "info", text: "Upload received; finishing…" });
      const t = await followTask(r.upid);
      setMsg(t.state === "ok" ? { tone: "info", text: `${file.name} uploaded to ${pool}.` } : { tone: "error", text: `Upload failed: ${t.message}` });
      if (t.state === "ok") { setFile(null); if (fileRef.current) fileRef.current.value = ""; }
    } catch (err) {
      setMsg({ tone: "error", text: (err as ApiError).message });
    }
    setXhr(null);
    setProgress(null);
    onDone();
  };
  return (
    <form class="upload" onSubmit={start} aria-label="Upload">
      <div class="field-inline">
        <label for="upload-file">ISO or disk image</label>
        <input id="upload-file" ref={fileRef} type="file" accept=".iso,.img,.qcow2,.raw,.vmdk"
          onChange={(e) => { setFile(e.currentTarget.files?.[0] ?? null); setMsg(null); }} />
      </div>
      {file && <span class="small muted">{formatBytes(file.size)}</span>}
      <button type="submit" class="btn btn-primary" disabled={!file || !!problem || progress !== null || !!denied} title={denied ?? undefined}>Upload to {pool}</button>
      {xhr && <button type="button" class="btn" onClick={() => xhr.abort()}>Cancel</button>}
      {progress !== null && (
        <div class="progress" role="progressbar" aria-label="Upload progress" aria-valuemin={0} aria-valuemax={100} aria-valuenow={Math.round(progress)}>
          <div class="progress-fill" style={{ width: `${progress}%` }} /><span>{progress.toFixed(0)}%</span>
        </div>
      )}
      {problem && <div class="field-error" role="alert">{problem}</div>}
      {msg && <div class={`alert alert-${msg.tone} full`} role={msg.tone === "error" ? "alert" : "status"}>{msg.text}</div>}
    </form>
  );
}

function DeleteVolume({ pool, vol, onClose }: { pool: string; vol: VolumeInfo; onClose: () => void }) {
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const go = async () => {
    setBusy(true);
    setError(null);
    try {
      const r = await del<TaskRef>(np(`/storage/${encodeURIComponent(pool)}/content/${encodeURIComponent(vol.name)}`));
      if (r?.upid) {
        notifyTask(r.upid);
        const t = await followTask(r.upid);
        if (t.state !== "ok") { setError(`Delete failed: ${t.message}`); setBusy(false); return; }
      }
      onClose();
    } catch (e) {
      setError((e as ApiError).message);
      setBusy(false);
    }
  };
  return (
    <Modal title={`Delete volume ${vol.name}`} onClose={onClose}>
      <p>Delete <span class="mono">{pool}:{vol.name}</span> ({formatBytes(vol.capacity)})? Its data is lost. A volume that a VM uses is refused.</p>
      {error && <div class="alert alert-error" role="alert">{error}</div>}
      <div class="modal-actions">
        <button type="button" class="btn" onClick={onClose}>Cancel</button>
        <button type="button" class="btn btn-danger" disabled={busy} onClick={go}>{busy ? "Deleting…" : "Delete volume"}</button>
      </div>
    </Modal>
  );
}

