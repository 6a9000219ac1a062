import RFB from "@novnc/novnc";
import { useEffect, useRef, useState } from "preact/hooks";
import { ApiError, currentNode, np, post } from "../api";
import type { VmState, VncProxy } from "../types";

type Status = "connecting" | "connected" | "disconnected" | "error";

export function Console({ vmid, state }: { vmid: number; state: VmState }) {
  const screen = useRef<HTMLDivElement>(null);
  const rfb = useRef<RFB | null>(null);
  const [status, setStatus] = useState<Status>("connecting");
  const [message, setMessage] = useState("");
  const [attempt, setAttempt] = useState(0);
  const running = state === "running" || state === "paused";

  useEffect(() => {
    if (!running) return;
    let cancelled = false;
    setStatus("connecting");
    setMessage("");
    (async () => {
      let p: VncProxy;
      try {
        p = await post<VncProxy>(np(`/vms/${vmid}/vncproxy`));
      } catch (e) {
        const a = e as ApiError;
        setStatus("error");
        setMessage(a.status === 404 || a.status === 405
          ? "This hostd has no console proxy (POST …/vncproxy is missing): update keel-hostd."
          : `Cannot open the console: ${a.message}`);
        return;
      }
      if (cancelled || !screen.current) return;
      const proto = location.protocol === "https:" ? "wss:" : "ws:";
      const url = `${proto}//${location.host}/api/v1${np(`/vms/${vmid}/vncwebsocket`)}?vncticket=${encodeURIComponent(p.ticket)}`;
      const r = new RFB(screen.current, url, { credentials: { password: p.password }, wsProtocols: ["binary"] });
      r.scaleViewport = true;
      r.background = "#111";
      r.addEventListener("connect", () => { setStatus("connected"); setMessage(""); });
      r.addEventListener("disconnect", (ev: Event) => {
        const clean = (ev as CustomEvent).detail?.clean;
        setStatus("disconnected");
        setMessage(clean ? "The console was closed." : "The connection to the console was lost.");
      });
      r.addEventListener("securityfailure", (ev: Event) => {
        setStatus("error");
        setMessage(`VNC authentication failed: ${(ev as CustomEvent).detail?.reason ?? "unknown reason"}`);
      });
      r.addEventListener("credentialsrequired", () => r.sendCredentials({ password: p.password }));
      rfb.current = r;
    })();
    return () => {
      cancelled = true;
      try { rfb.current?.disconnect(); } catch { /* already closed */ }
      rfb.current = null;
    };
  }, [vmid, running, attempt, currentNode()]);

  if (!running) {
    return (
      <div class="empty">
        <p class="empty-title">The VM is not running</p>
        <p class="empty-body">Start it to see its screen here.</p>
      </div>
    );
  }
  const label = { connecting: "Connecting…", connected: "Connected", disconnected: "Disconnected", error: "Error" }[status];
  return (
    <div class="console">
      <div class="console-bar">
        <span class={`badge badge-${status === "connected" ? "ok" : status === "connecting" ? "info" : "bad"}`} role="status" aria-live="polite">{label}</span>
        {message && <span class="small">{message}</span>}
        <span class="spacer" />
        <button type="button" class="btn btn-sm" disabled={status !== "connected"} onClick={() => rfb.current?.sendCtrlAltDel()}>Send Ctrl+Alt+Del</button>
        <button type="button" class="btn btn-sm" onClick={() => setAttempt(attempt + 1)}>Reconnect</button>
        <button type="button" class="btn btn-sm" disabled={status !== "connected"} onClick={() => screen.current?.requestFullscreen?.()}>Full screen</button>
      </div>
      <div class="console-screen" ref={screen} aria-label={`Console of VM ${vmid}`} role="application" />
    </div>
  );
}

export function Serial({ vmid }: { vmid: number }) {
  const [text, setText] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [follow, setFollow] = useState(true);
  const pre = useRef<HTMLPreElement>(null);
  useEffect(() => {
    let alive = true;
    let offset = 0;
    let timer: number | undefined;
    const poll = async () => {
      try {
        const res = await fetch(`/api/v1${np(`/vms/${vmid}/serial`)}?start=${offset}`, { credentials: "same-origin" });
        if (!res.ok) throw new Error(`${res.status} ${res.statusText}`);
        const t = await res.text();
        const nextHdr = res.headers.get("x-keel-serial-next");
        offset = nextHdr ? Number(nextHdr) : offset + new TextEncoder().encode(t).length;
        if (alive && t) setText((old) => (old + t).slice(-200_000));
        if (alive) setError(null);
      } catch (e) { if (alive) setError(String((e as Error).message)); }
      if (alive) timer = window.setTimeout(poll, 1500);
    };
    poll();
    return () => { alive = false; clearTimeout(timer); };
  }, [vmid]);
  useEffect(() => { if (follow && pre.current) pre.current.scrollTop = pre.current.scrollHeight; }, [text, follow]);
  return (
    <div>
      <div class="console-bar">
        <label class="check"><input type="checkbox" checked={follow} onChange={(e) => setFollow(e.currentTarget.checked)} /> Follow output</label>
        {error && <span class="small warn-text" role="alert">Cannot read the serial log: {error}</span>}
      </div>
      <pre class="log serial" ref={pre} aria-label="Serial console output" tabIndex={0}>
        {text || "(no serial output yet — the guest writes here when its kernel uses ttyS0)"}
      </pre>
    </div>
  );
}
