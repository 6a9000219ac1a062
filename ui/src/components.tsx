import type { ComponentChildren } from "preact";
import { useEffect, useRef } from "preact/hooks";
import { percent, taskStateBadge, vmStateBadge } from "./logic";
import type { TaskState, VmState } from "./types";

export function Badge({ tone, children }: { tone: string; children: ComponentChildren }) {
  return <span class={`badge badge-${tone}`}>{children}</span>;
}
export function VmStateBadge({ state }: { state: VmState }) {
  const b = vmStateBadge(state);
  return <Badge tone={b.tone}><span class="dot" aria-hidden="true" />{b.label}</Badge>;
}
export function TaskStateBadge({ state }: { state: TaskState }) {
  const b = taskStateBadge(state);
  return <Badge tone={b.tone}>{b.label}</Badge>;
}

export function UsageBar({ used, total, label }: { used: number; total: number; label: string }) {
  const p = percent(used, total);
  const tone = p > 90 ? "bad" : p > 75 ? "warn" : "ok";
  return (
    <div class="usage" role="meter" aria-label={label} aria-valuemin={0} aria-valuemax={100} aria-valuenow={Math.round(p)}>
      <div class={`usage-fill usage-${tone}`} style={{ width: `${p}%` }} />
    </div>
  );
}

export function ErrorBox({ error, title }: { error: { message: string } | null | undefined; title?: string }) {
  if (!error) return null;
  return (
    <div class="alert alert-error" role="alert">
      {title && <strong>{title}: </strong>}{error.message}
    </div>
  );
}

export function Empty({ title, children }: { title: string; children?: ComponentChildren }) {
  return (
    <div class="empty">
      <p class="empty-title">{title}</p>
      {children && <div class="empty-body">{children}</div>}
    </div>
  );
}

export function Loading({ what }: { what: string }) {
  return <p class="muted" role="status">Loading {what}…</p>;
}

export function Field({ id, label, error, hint, children }: {
  id: string; label: string; error?: string; hint?: ComponentChildren; children: ComponentChildren;
}) {
  return (
    <div class={`field${error ? " has-error" : ""}`}>
      <label for={id}>{label}</label>
      {children}
      {hint && !error && <div class="hint" id={`${id}-hint`}>{hint}</div>}
      {error && <div class="field-error" id={`${id}-error`} role="alert">{error}</div>}
    </div>
  );
}

export function Modal({ title, onClose, children }: { title: string; onClose: () => void; children: ComponentChildren }) {
  const ref = useRef<HTMLDivElement>(null);
  // Escape calls the latest onClose (a dialog that is busy refuses to close through it)
  const close = useRef(onClose);
  close.current = onClose;
  useEffect(() => {
    const prev = document.activeElement as HTMLElement | null;
    const first = ref.current?.querySelector<HTMLElement>("input, button, select, textarea");
    first?.focus();
    const key = (e: KeyboardEvent) => { if (e.key === "Escape") close.current(); };
    document.addEventListener("keydown", key);
    return () => { document.removeEventListener("keydown", key); prev?.focus?.(); };
  }, []);
  return (
    <div class="modal-backdrop" onClick={(e) => { if (e.target === e.currentTarget) onClose(); }}>
      <div class="modal" role="dialog" aria-modal="true" aria-labelledby="modal-title" ref={ref}>
        <h2 id="modal-title">{title}</h2>
        {children}
      </div>
    </div>
  );
}

export function Tabs<T extends string>({ tabs, active, onChange, label }: {
  tabs: [T, string][]; active: T; onChange: (t: T) => void; label: string;
}) {
  const onKey = (e: KeyboardEvent) => {
    const i = tabs.findIndex(([k]) => k === active);
    let j = -1;
    if (e.key === "ArrowRight") j = (i + 1) % tabs.length;
    if (e.key === "ArrowLeft") j = (i - 1 + tabs.length) % tabs.length;
    if (j >= 0) {
      e.preventDefault();
      onChange(tabs[j][0]);
      setTimeout(() => document.getElementById(`tab-${tabs[j][0]}`)?.focus());
    }
  };
  return (
    <div class="tabs" role="tablist" aria-label={label} onKeyDown={onKey}>
      {tabs.map(([k, name]) => (
        <button type="button" role="tab" id={`tab-${k}`} aria-selected={k === active} aria-controls={`panel-${k}`}
          tabIndex={k === active ? 0 : -1} class={k === active ? "tab active" : "tab"} onClick={() => onChange(k)}>
          {name}
        </button>
      ))}
    </div>
  );
}
