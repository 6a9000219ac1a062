// HTTP client: session (CSRF token in sessionStorage, ticket in the HttpOnly cookie),
// JSON errors, 401 handling and task following.

import { upidNode } from "./cluster";
import type { Health, LoginResponse, TaskInfo, TaskLogLine, TaskRef } from "./types";

const K_CSRF = "keel.csrf";
const K_USER = "keel.user";
const K_NODE = "keel.node";
const K_EXPIRES = "keel.expires";
const K_SELECTED = "keel.selected-node";

export class ApiError extends Error {
  constructor(public status: number, public code: string, message: string, public field?: string) {
    super(message);
  }
}

export const session = {
  get csrf() { return sessionStorage.getItem(K_CSRF); },
  get user() { return sessionStorage.getItem(K_USER) ?? ""; },
  get node() { return sessionStorage.getItem(K_NODE) ?? ""; },
  get loggedIn() { return !!sessionStorage.getItem(K_CSRF); },
  set(r: LoginResponse, node: string) {
    sessionStorage.setItem(K_CSRF, r.csrf_token);
    sessionStorage.setItem(K_USER, r.username);
    sessionStorage.setItem(K_NODE, node);
    sessionStorage.setItem(K_EXPIRES, String(r.expires));
  },
  clear() {
    for (const k of [K_CSRF, K_USER, K_NODE, K_EXPIRES, K_SELECTED]) sessionStorage.removeItem(k);
  },
};

// The node that node-scoped pages (VMs, storage, tasks) look at: the one chosen in the
// sidebar's node list, else the node the session logged in to. Any node's API serves the
// whole cluster (hostd forwards node-scoped requests), so the URL names the node.
type NodeListener = (node: string) => void;
const nodeListeners = new Set<NodeListener>();
export function currentNode(): string {
  return sessionStorage.getItem(K_SELECTED) || session.node;
}
export function selectNode(node: string) {
  if (node === currentNode()) return;
  if (node === session.node) sessionStorage.removeItem(K_SELECTED);
  else sessionStorage.setItem(K_SELECTED, node);
  nodeListeners.forEach((l) => l(node));
}
export function onNodeChange(l: NodeListener): () => void {
  nodeListeners.add(l);
  return () => { nodeListeners.delete(l); };
}

/** Called on any 401 from an authenticated call: the app sends the user to the login page. */
let onExpired: () => void = () => {};
export function setExpiredHandler(f: () => void) { onExpired = f; }

async function errorFrom(res: Response): Promise<ApiError> {
  let code = "http";
  let message = `${res.status} ${res.statusText}`;
  let field: string | undefined;
  try {
    const text = await res.text();
    try {
      const body = JSON.parse(text);
      if (body?.error) { code = body.error.code; message = body.error.message; field = body.error.field; }
    } catch {
      if (text) message = `${message}: ${text.slice(0, 300)}`;
    }
  } catch { /* ignore */ }
  return new ApiError(res.status, code, message, field);
}

const unreachable = (e: unknown, change = false) =>
  new ApiError(0, "network", `Cannot reach keel-hostd (${(e as Error).message}). Check that the service is running.` +
    (change ? " The change may have reached it before the connection failed: reload to see whether it was applied." : ""));

export async function request(method: string, path: string, body?: unknown, raw = false): Promise<any> {
  const headers: Record<string, string> = {};
  if (method !== "GET" && session.csrf) headers["CSRFPreventionToken"] = session.csrf;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const send = () => fetch(`/api/v1${path}`, {
    method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let res: Response;
  try {
    res = await send();
  } catch (e) {
    // A read is asked once more: a kept-alive connection the server closed just as the browser
    // reused it fails the fetch without the request reaching hostd. A change is never resent
    // (it may have reached hostd); its caller reports the failure.
    if (method !== "GET") throw unreachable(e, true);
    await new Promise((r) => setTimeout(r, 300));
    try {
      res = await send();
    } catch (e2) {
      throw unreachable(e2);
    }
  }
  if (res.status === 401 && !path.startsWith("/access/ticket")) {
    const err = await errorFrom(res);
    onExpired();
    throw err;
  }
  if (!res.ok) throw await errorFrom(res);
  if (raw) return res;
  if (res.status === 204) return null;
  const ct = res.headers.get("content-type") ?? "";
  return ct.includes("json") ? res.json() : res.text();
}

export const get = <T = any>(p: string): Promise<T> => request("GET", p);
export const post = <T = any>(p: string, body?: unknown): Promise<T> => request("POST", p, body);
export const put = <T = any>(p: string, body?: unknown): Promise<T> => request("PUT", p, body);
export const del = <T = any>(p: string): Promise<T> => request("DELETE", p);

/** Node-scoped path: `/nodes/{node}…` for the selected node (or `node`). */
export const np = (rest: string, node = currentNode()) => `/nodes/${encodeURIComponent(node)}${rest}`;

export async function login(username: string, password: string): Promise<void> {
  const health = await get<Health>("/health");
  const r = await request("POST", "/access/ticket", { username, password }) as LoginResponse;
  session.set(r, health.node);
}

export async function logout(): Promise<void> {
  try { await del("/access/ticket"); } catch { /* already gone */ }
  session.clear();
}

// A task lives on the node that ran it (named in its UPID), whichever node is selected now.
export function getTask(upid: string): Promise<TaskInfo> {
  return get(np(`/tasks/${encodeURIComponent(upid)}`, upidNode(upid) ?? currentNode()));
}
export function getTaskLog(upid: string, start: number): Promise<TaskLogLine[]> {
  return get(np(`/tasks/${encodeURIComponent(upid)}/log?start=${start}`, upidNode(upid) ?? currentNode()));
}

/** Follow a task until it ends; `onUpdate` sees every poll and new log lines. */
export async function followTask(
  upid: string,
  onUpdate?: (t: TaskInfo, newLines: TaskLogLine[]) => void,
  intervalMs = 1000,
): Promise<TaskInfo> {
  let next = 0;
  for (;;) {
    const t = await getTask(upid);
    const lines = await getTaskLog(upid, next).catch(() => [] as TaskLogLine[]);
    if (lines.length) next = lines[lines.length - 1].n + 1;
    onUpdate?.(t, lines);
    if (t.state !== "running") return t;
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** Start a task (202 {upid}) and wait for it; throws ApiError with the task's message on failure. */
export async function runTask(
  method: "POST" | "PUT" | "DELETE", path: string, body?: unknown,
  onUpdate?: (t: TaskInfo, newLines: TaskLogLine[]) => void,
): Promise<TaskInfo> {
  const ref = await request(method, path, body) as TaskRef;
  notifyTask(ref.upid);
  const t = await followTask(ref.upid, onUpdate);
  if (t.state === "error") throw new ApiError(500, "task", t.message ?? "task failed");
  return t;
}

// Recently started tasks, shown in the task bar at the bottom of the screen.
type Listener = (upids: string[]) => void;
let recent: string[] = [];
const listeners = new Set<Listener>();
export function notifyTask(upid: string) {
  recent = [upid, ...recent.filter((u) => u !== upid)].slice(0, 5);
  listeners.forEach((l) => l(recent));
}
export function onRecentTasks(l: Listener): () => void {
  listeners.add(l);
  l(recent);
  return () => listeners.delete(l);
}

/** Upload a file with progress (XMLHttpRequest: fetch has no upload progress). */
export function upload(pool: string, file: File, onProgress: (loaded: number, total: number) => void): Promise<TaskRef> & { abort: () => void } {
  const xhr = new XMLHttpRequest();
  const p = new Promise<TaskRef>((resolve, reject) => {
    const url = `/api/v1${np(`/storage/${encodeURIComponent(pool)}/upload`)}?filename=${encodeURIComponent(file.name)}&size=${file.size}`;
    xhr.open("POST", url);
    xhr.setRequestHeader("CSRFPreventionToken", session.csrf ?? "");
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    xhr.upload.onprogress = (e) => onProgress(e.loaded, e.lengthComputable ? e.total : file.size);
    xhr.onload = () => {
      let body: any = null;
      try { body = JSON.parse(xhr.responseText); } catch { /* not JSON */ }
      if (xhr.status === 401) { onExpired(); }
      if (xhr.status >= 200 && xhr.status < 300) resolve(body as TaskRef);
      else reject(new ApiError(xhr.status, body?.error?.code ?? "http", body?.error?.message ?? `${xhr.status} ${xhr.statusText}`, body?.error?.field));
    };
    xhr.onerror = () => reject(new ApiError(0, "network", "The upload was interrupted (network error)."));
    xhr.onabort = () => reject(new ApiError(0, "aborted", "Upload cancelled."));
    xhr.send(file);
  });
  return Object.assign(p, { abort: () => xhr.abort() });
}
