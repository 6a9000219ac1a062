import { useEffect, useState } from "preact/hooks";
import { ApiError, followTask, get, notifyTask, np, post } from "../api";
import { ErrorBox, Field } from "../components";
import {
  type CreateForm, type FieldErrors, diskFormatFor, fieldForError, formatBytes, mibHint, nextFreeVmid, rawOnlyPool, rawOnlyPoolText,
  specFromForm, stepOfField, validateSpec, vmidTaken,
} from "../logic";
import { navigate } from "../router";
import type { NetworkInfo, PoolInfo, TaskInfo, TaskLogLine, TaskRef, VmSummary, VolumeInfo } from "../types";

const STEPS = ["General", "CPU & memory", "Disk & CD-ROM", "Network", "Review"];
const KNOWN = ["vmid", "name", "vcpus", "memory_mib", "firmware", "machine", "disks[0]", "disks[0].pool",
  "disks[0].size_mib", "disks[0].format", "disks[0].bus", "cdrom", "nics[0]", "nics[0].model"];
/** DOM id of the control showing a field's error */
const controlId = (f: string) => "f-" + f.replace(/[[\].]/g, "_");

export function CreateVm() {
  const [form, setForm] = useState<CreateForm>({
    vmid: "", name: "", vcpus: "1", memory_mib: "512", firmware: "bios", machine: "q35",
    addDisk: true, diskPool: "local", diskSize: "8192", diskFormat: "qcow2", diskBus: "virtio",
    iso: "", addNic: false, nic: "", nicModel: "virtio", start: true,
  });
  const [step, setStep] = useState(0);
  const [errors, setErrors] = useState<FieldErrors>({});
  const [pools, setPools] = useState<PoolInfo[]>([]);
  const [isos, setIsos] = useState<{ pool: string; vol: VolumeInfo }[]>([]);
  const [networks, setNetworks] = useState<NetworkInfo[]>([]);
  const [loadErr, setLoadErr] = useState<ApiError | null>(null);
  const [task, setTask] = useState<TaskInfo | null>(null);
  const [log, setLog] = useState<TaskLogLine[]>([]);
  const [busy, setBusy] = useState(false);
  const [formError, setFormError] = useState<string | null>(null);
  // This node's VMs: a vmid already taken is refused at the first step, not after the last.
  const [vms, setVms] = useState<VmSummary[]>([]);

  useEffect(() => {
    (async () => {
      try {
        const list = await get<VmSummary[]>(np("/vms"));
        setVms(list);
        let id: number;
        try { id = (await get<{ vmid: number }>(np("/vms/nextid"))).vmid; }
        catch { id = nextFreeVmid(list.map((v) => v.vmid)); }
        setForm((f) => (f.vmid ? f : { ...f, vmid: String(id), name: f.name || `vm${id}` }));
        const ps = await get<PoolInfo[]>(np("/storage"));
        setPools(ps);
        if (ps.length && !ps.some((p) => p.name === "local")) setForm((f) => ({ ...f, diskPool: ps[0].name }));
        const all: { pool: string; vol: VolumeInfo }[] = [];
        await Promise.all(ps.filter((p) => p.active).map(async (p) => {
          const vols = await get<VolumeInfo[]>(np(`/storage/${encodeURIComponent(p.name)}/content`));
          vols.filter((v) => v.format === "iso").forEach((vol) => all.push({ pool: p.name, vol }));
        }));
        all.sort((a, b) => a.vol.name.localeCompare(b.vol.name));
        setIsos(all);
        const nets = await get<NetworkInfo[]>(np("/networks"));
        setNetworks(nets);
        if (nets.length) {
          const n = nets.find((x) => x.active) ?? nets[0];
          setForm((f) => ({ ...f, nic: `${n.kind === "host_bridge" ? "bridge" : "network"}:${n.kind === "host_bridge" ? (n.bridge ?? n.name) : n.name}` }));
        }
      } catch (e) { setLoadErr(e as ApiError); }
    })();
  }, []);

  const poolInfo = pools.find((p) => p.name === form.diskPool);
  // an lvm-thin or iscsi-lvm pool holds raw disks only: the new disk is raw there, whatever
  // format was chosen for a file pool (the API refuses qcow2 on disks[0].format)
  const rawOnly = rawOnlyPool(poolInfo?.kind);
  const effective: CreateForm = { ...form, diskFormat: diskFormatFor(poolInfo?.kind, form.diskFormat) };

  const set = <K extends keyof CreateForm>(k: K, v: CreateForm[K]) => {
    setForm((f) => ({ ...f, [k]: v }));
    const fieldKey = ({ diskPool: "disks[0].pool", diskSize: "disks[0].size_mib", iso: "cdrom", nic: "nics[0]" } as Record<string, string>)[k] ?? k;
    if (errors[fieldKey]) { const e = { ...errors }; delete e[fieldKey]; setErrors(e); }
  };
  const stepErrors = (s: number, errs: FieldErrors) => Object.keys(errs).filter((f) => stepOfField(f) === s);

  const validate = (): FieldErrors => {
    const errs = validateSpec(specFromForm(effective));
    const taken = errs.vmid ? null : vmidTaken(form.vmid, vms);
    if (taken) errs.vmid = taken;
    if (form.addNic && !form.nic) errs["nics[0]"] = "Choose a network or bridge (or untick the NIC).";
    const mapped: FieldErrors = {};
    for (const [k, v] of Object.entries(errs)) mapped[fieldForError(k, KNOWN)] = v;
    return mapped;
  };
  const next = () => {
    const errs = validate();
    const here = stepErrors(step, errs);
    if (here.length) {
      setErrors(errs);
      setTimeout(() => document.getElementById(controlId(here[0]))?.focus());
      return;
    }
    setStep(step + 1);
  };
  const goto = (s: number) => {
    if (s <= step) { setStep(s); return; }
    const errs = validate();
    for (let i = 0; i < s; i++) if (stepErrors(i, errs).length) { setErrors(errs); setStep(i); return; }
    setStep(s);
  };

  const create = async (e: Event) => {
    e.preventDefault();
    if (step < STEPS.length - 1) { next(); return; }
    setFormError(null);
    const errs = validate();
    if (Object.keys(errs).length) {
      setErrors(errs);
      setStep(Math.min(...Object.keys(errs).map(stepOfField)));
      return;
    }
    const spec = specFromForm(effective);
    setBusy(true);
    try {
      const r = await post<TaskRef>(np(`/vms${form.start ? "?start=true" : ""}`), spec);
      notifyTask(r.upid);
      const t = await followTask(r.upid, (t, lines) => { setTask(t); if (lines.length) setLog((l) => [...l, ...lines]); });
      if (t.state === "ok") navigate(`/vms/${spec.vmid}`);
      else { setFormError(`Creating the VM failed: ${t.message ?? "see the task log below"}`); setBusy(false); }
    } catch (err) {
      const a = err as ApiError;
      setBusy(false);
      if (a.field) {
        const f = fieldForError(a.field, KNOWN);
        if (f === "_form") setFormError(`${a.field}: ${a.message}`);
        else { setErrors({ [f]: a.message }); setStep(stepOfField(f)); setTimeout(() => document.getElementById(controlId(f))?.focus()); }
      } else if (a.code === "conflict" && /vmid|id/i.test(a.message) && !/name/i.test(a.message)) {
        setErrors({ vmid: a.message }); setStep(0);
      } else if (a.code === "conflict" && /name/i.test(a.message)) {
        setErrors({ name: a.message }); setStep(0);
      } else setFormError(a.message);
    }
  };

  const input = (field: string, k: keyof CreateForm, props: Record<string, unknown> = {}) => (
    <input id={controlId(field)} value={form[k] as string} aria-invalid={!!errors[field]}
      aria-describedby={errors[field] ? `${controlId(field)}-error` : `${controlId(field)}-hint`}
      onInput={(e) => set(k, e.currentTarget.value as never)} {...props} />
  );
  const spec = specFromForm(effective);

  return (
    <section aria-labelledby="create-title">
      <div class="page-head"><h1 id="create-title">Create virtual machine</h1></div>
      <ErrorBox error={loadErr} title="Could not load pools, ISOs or networks" />
      <div class="wizard">
        <ol class="steps" aria-label="Steps">
          {STEPS.map((s, i) => (
            <li><button type="button" class={`step${i === step ? " current" : ""}${stepErrors(i, errors).length ? " invalid" : ""}`}
              aria-current={i === step ? "step" : undefined} onClick={() => goto(i)} disabled={busy}>
              <span class="step-num">{i + 1}</span> {s}</button></li>
          ))}
        </ol>
        <form class="wizard-body" onSubmit={create} noValidate>
          {formError && <div class="alert alert-error" role="alert">{formError}</div>}
          {step === 0 && (
            <fieldset><legend>General</legend>
              <Field id={controlId("name")} label="Name" error={errors.name} hint="Letters, digits, '-' and '.'; starts with a letter or digit; at most 63.">
                {input("name", "name", { autoFocus: true, autoComplete: "off" })}
              </Field>
              <Field id={controlId("vmid")} label="VM ID" error={errors.vmid} hint="Unique on the node, 100 or more. Prefilled with the next free id.">
                {input("vmid", "vmid", {
                  inputMode: "numeric",
                  onBlur: () => { const t = vmidTaken(form.vmid, vms); if (t) setErrors((e) => ({ ...e, vmid: t })); },
                })}
              </Field>
            </fieldset>
          )}
          {step === 1 && (
            <fieldset><legend>CPU &amp; memory</legend>
              <Field id={controlId("vcpus")} label="vCPUs" error={errors.vcpus} hint="1 to 288.">{input("vcpus", "vcpus", { inputMode: "numeric" })}</Field>
              <Field id={controlId("memory_mib")} label="Memory (MiB)" error={errors.memory_mib} hint="16 MiB to 16 TiB. 1024 MiB = 1 GiB.">{input("memory_mib", "memory_mib", { inputMode: "numeric" })}</Field>
              <Field id={controlId("firmware")} label="Firmware" error={errors.firmware}>
                <select id={controlId("firmware")} value={form.firmware} onChange={(e) => set("firmware", e.currentTarget.value as "bios")}>
                  <option value="bios">BIOS (SeaBIOS)</option><option value="uefi">UEFI (OVMF)</option>
                </select>
              </Field>
              <Field id={controlId("machine")} label="Machine type" error={errors.machine}>
                <select id={controlId("machine")} value={form.machine} onChange={(e) => set("machine", e.currentTarget.value as "q35")}>
                  <option value="q35">q35 (modern, PCIe)</option><option value="pc">pc (i440FX, legacy)</option>
                </select>
              </Field>
            </fieldset>
          )}
          {step === 2 && (
            <>
              <fieldset><legend>Disk</legend>
                <label class="check"><input type="checkbox" checked={form.addDisk} onChange={(e) => set("addDisk", e.currentTarget.checked)} /> Add a new disk</label>
                {errors["disks[0]"] && <div class="field-error" role="alert">{errors["disks[0]"]}</div>}
                {form.addDisk && (
                  <div class="row">
                    <Field id={controlId("disks[0].pool")} label="Disk pool" error={errors["disks[0].pool"]}
                      hint={poolInfo ? `${formatBytes(poolInfo.available)} free` : undefined}>
                      <select id={controlId("disks[0].pool")} value={form.diskPool} onChange={(e) => set("diskPool", e.currentTarget.value)}>
                        {pools.length === 0 && <option value="">No pool available</option>}
                        {pools.map((p) => <option value={p.name} disabled={!p.active}>{p.name}{p.active ? "" : " (inactive)"}</option>)}
                      </select>
                    </Field>
                    <Field id={controlId("disks[0].size_mib")} label="Disk size (MiB)" error={errors["disks[0].size_mib"]} hint={mibHint(form.diskSize)}>
                      {input("disks[0].size_mib", "diskSize", { inputMode: "numeric" })}
                    </Field>
                    <Field id={controlId("disks[0].format")} label="Disk format" error={errors["disks[0].format"]}
                      hint={rawOnly && poolInfo ? rawOnlyPoolText(poolInfo.kind) : undefined}>
                      <select id={controlId("disks[0].format")} value={effective.diskFormat} onChange={(e) => set("diskFormat", e.currentTarget.value as "qcow2")}>
                        <option value="qcow2" disabled={rawOnly}>qcow2 (thin, snapshots)</option><option value="raw">raw</option>
                      </select>
                    </Field>
                    <Field id={controlId("disks[0].bus")} label="Disk bus" error={errors["disks[0].bus"]}>
                      <select id={controlId("disks[0].bus")} value={form.diskBus} onChange={(e) => set("diskBus", e.currentTarget.value as "virtio")}>
                        <option value="virtio">VirtIO (fastest; needs drivers on Windows)</option><option value="sata">SATA</option><option value="scsi">SCSI (virtio-scsi)</option>
                      </select>
                    </Field>
                  </div>
                )}
              </fieldset>
              <fieldset><legend>CD-ROM</legend>
                <Field id={controlId("cdrom")} label="CD-ROM ISO" error={errors.cdrom}
                  hint={isos.length === 0 ? <>No ISO in any pool yet: upload one on the <a href="/storage">Storage</a> page.</> : "The VM boots from the ISO first."}>
                  <select id={controlId("cdrom")} value={form.iso} onChange={(e) => set("iso", e.currentTarget.value)}>
                    <option value="">No CD-ROM</option>
                    {isos.map(({ pool, vol }) => <option value={`${pool}/${vol.name}`}>{vol.name} ({pool}, {formatBytes(vol.capacity)})</option>)}
                  </select>
                </Field>
              </fieldset>
            </>
          )}
          {step === 3 && (
            <fieldset><legend>Network</legend>
              <label class="check"><input type="checkbox" checked={form.addNic} onChange={(e) => set("addNic", e.currentTarget.checked)} /> Add a network interface</label>
              {form.addNic && (
                <div class="row">
                  <Field id={controlId("nics[0]")} label="Network or bridge" error={errors["nics[0]"]}
                    hint={networks.length === 0 ? "No libvirt network or host bridge found: create one first." : "Inactive networks are started by libvirt when the VM starts only if autostart is on."}>
                    <select id={controlId("nics[0]")} value={form.nic} onChange={(e) => set("nic", e.currentTarget.value)}>
                      {networks.length === 0 && <option value="">None available</option>}
                      {networks.map((n) => n.kind === "host_bridge"
                        ? <option value={`bridge:${n.bridge ?? n.name}`}>Host bridge {n.bridge ?? n.name}</option>
                        : <option value={`network:${n.name}`}>{n.name} ({n.kind}{n.cidr ? `, ${n.cidr}` : ""}{n.active ? "" : ", inactive"})</option>)}
                    </select>
                  </Field>
                  <Field id={controlId("nics[0].model")} label="NIC model" error={errors["nics[0].model"]}>
                    <select id={controlId("nics[0].model")} value={form.nicModel} onChange={(e) => set("nicModel", e.currentTarget.value as "virtio")}>
                      <option value="virtio">VirtIO</option><option value="e1000">Intel e1000 (compatibility)</option>
                    </select>
                  </Field>
                </div>
              )}
            </fieldset>
          )}
          {step === 4 && (
            <fieldset><legend>Review</legend>
              <dl class="kv">
                <dt>VM</dt><dd>{spec.vmid} · {spec.name}</dd>
                <dt>CPU / memory</dt><dd>{spec.vcpus} vCPU · {spec.memory_mib} MiB · {form.firmware.toUpperCase()} · {form.machine}</dd>
                <dt>Disk</dt><dd>{form.addDisk ? `${form.diskSize} MiB ${effective.diskFormat} on ${form.diskPool} (${form.diskBus})` : "none"}</dd>
                <dt>CD-ROM</dt><dd>{form.iso || "none"}</dd>
                <dt>Network</dt><dd>{form.addNic && form.nic ? `${form.nic.replace(":", " ")} (${form.nicModel})` : "none"}</dd>
                <dt>Boot order</dt><dd>{(spec.boot ?? ["disks", "cdrom", "NICs"]).join(" → ")}</dd>
              </dl>
              <label class="check"><input type="checkbox" checked={form.start} onChange={(e) => set("start", e.currentTarget.checked)} /> Start after create</label>
              <details><summary>JSON spec sent to the API</summary><pre class="code">{JSON.stringify(spec, null, 2)}</pre></details>
            </fieldset>
          )}
          {task && (
            <div class="task-follow" aria-live="polite">
              <p><strong>{task.state === "running" ? "Creating…" : task.state === "ok" ? "Created." : "Failed."}</strong> <span class="mono small">{task.upid}</span></p>
              <pre class="log">{log.map((l) => l.line).join("\n")}</pre>
            </div>
          )}
          <div class="wizard-actions">
            <a class="btn btn-ghost" href="/vms">Cancel</a>
            <span class="spacer" />
            {step > 0 && <button type="button" class="btn" onClick={() => setStep(step - 1)} disabled={busy}>Back</button>}
            {step < STEPS.length - 1
              ? <button type="submit" class="btn btn-primary">Next</button>
              : <button type="submit" class="btn btn-primary" disabled={busy}>{busy ? "Creating…" : "Create VM"}</button>}
          </div>
        </form>
      </div>
    </section>
  );
}
