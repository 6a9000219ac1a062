// The caller's effective privileges (GET /api/v1/access/permissions), for hiding or disabling
// what the server would refuse with 403. The server decides; this only explains in advance.

import { useEffect, useState } from "preact/hooks";
import { get, session } from "./api";

export interface Permissions {
  userid: string;
  token?: string;
  /** path → privileges on it (/, /vms, /vms/100, /storage/local, /cluster, /access, …) */
  paths: Record<string, string[]>;
}

/** `/vms/100` → [`/vms/100`, `/vms`, `/`] */
export function pathChain(path: string): string[] {
  const segs = path.split("/").filter(Boolean);
  const out: string[] = [];
  for (let i = segs.length; i > 0; i--) out.push("/" + segs.slice(0, i).join("/"));
  out.push("/");
  return out;
}

/** Privileges on `path`: the server's answer for it, else for its nearest listed parent. */
export function privsAt(p: Permissions, path: string): string[] {
  for (const q of pathChain(path)) if (p.paths[q]) return p.paths[q];
  return [];
}

/** Whether the caller may use `priv` on `path`; `true` while permissions are unknown. */
export function can(p: Permissions | undefined, priv: string, path: string): boolean {
  return !p || privsAt(p, path).includes(priv);
}

/** Why a control is disabled (for its title), or null when allowed. */
export function whyNot(p: Permissions | undefined, priv: string, path: string): string | null {
  if (can(p, priv, path)) return null;
  return `Not permitted: this needs ${priv} on ${path}`;
}

// One copy for the whole page, refreshed at most every 15 s.
let current: Permissions | undefined;
let fetchedAt = 0;
let inflight: Promise<void> | null = null;
const subs = new Set<(p: Permissions | undefined) => void>();

export function refreshPermissions(force = false): Promise<void> {
  const stale = !current || current.userid !== session.user || Date.now() - fetchedAt > 15000;
  if (!force && !stale) return Promise.resolve();
  if (inflight) return inflight;
  inflight = get<Permissions>("/access/permissions")
    .then((p) => { current = p; fetchedAt = Date.now(); subs.forEach((f) => f(p)); })
    .catch(() => { /* keep the last answer; the server still enforces */ })
    .finally(() => { inflight = null; });
  return inflight;
}

export function usePermissions(): Permissions | undefined {
  const [p, setP] = useState<Permissions | undefined>(current);
  const user = session.user;
  useEffect(() => {
    subs.add(setP);
    const t = window.setInterval(() => { if (!document.hidden && session.loggedIn) refreshPermissions(); }, 30000);
    return () => { subs.delete(setP); clearInterval(t); };
  }, []);
  // another user signed in (the shell outlives sessions): fetch theirs at once
  useEffect(() => { if (user) refreshPermissions(); }, [user]);
  return p && p.userid === user ? p : undefined;
}

/** `90` days from now in Unix seconds; blank → undefined (never). */
export function expireFromDays(days: string, now = Date.now()): number | undefined | null {
  const t = days.trim();
  if (!t) return undefined;
  if (!/^\d+$/.test(t) || Number(t) < 1) return null;
  return Math.floor(now / 1000) + Number(t) * 86400;
}

/** Checks of the ACL form mirroring the API's (path shapes, names). */
export function aclPathProblem(path: string): string | null {
  if (path === "/") return null;
  const m = path.match(/^\/([a-z]+)(?:\/([^/]+))?$/);
  if (!m) return "Use /, /nodes/NODE, /vms, /vms/VMID, /storage, /storage/POOL, /cluster or /access";
  const [, top, sub] = m;
  if (!["nodes", "vms", "storage", "cluster", "access"].includes(top)) return `${top} is not an ACL path`;
  if (sub === undefined) return null;
  if (top === "vms") return /^[1-9]\d*$/.test(sub) ? null : `${sub} is not a VM id`;
  if (top === "nodes" || top === "storage") return /^[A-Za-z0-9._-]{1,64}$/.test(sub) ? null : `${sub} is not a valid name`;
  return `${path} is not an ACL path`;
}

/** The new-password rules of keel-api's `validate_password`, checked before sending. */
export function passwordProblem(pw: string, again: string): string | null {
  const n = [...pw].length;
  if (n < 8) return `A password needs at least 8 characters (this one has ${n}).`;
  if (n > 1024) return "A password may have at most 1024 characters.";
  if (/[\u0000-\u001f\u007f]/.test(pw)) return "A password cannot contain control characters.";
  if (pw !== again) return "The two new passwords differ.";
  return null;
}
