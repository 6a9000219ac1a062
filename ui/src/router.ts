import { useEffect, useState } from "preact/hooks";

export interface Route { path: string; query: URLSearchParams }

function current(): Route {
  return { path: location.pathname, query: new URLSearchParams(location.search) };
}

const subs = new Set<() => void>();
export function navigate(to: string, replace = false) {
  if (to === location.pathname + location.search) return;
  if (replace) history.replaceState(null, "", to);
  else history.pushState(null, "", to);
  subs.forEach((f) => f());
  window.scrollTo(0, 0);
}
window.addEventListener("popstate", () => subs.forEach((f) => f()));

export function useRoute(): Route {
  const [r, setR] = useState(current);
  useEffect(() => {
    const f = () => setR(current());
    subs.add(f);
    return () => { subs.delete(f); };
  }, []);
  return r;
}

/** Intercept clicks on same-origin <a href> so links navigate without reloading. */
export function linkClick(e: MouseEvent) {
  const a = (e.target as HTMLElement).closest("a");
  if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || a.target) return;
  const href = a.getAttribute("href");
  if (!href || !href.startsWith("/") || href.startsWith("/api/")) return;
  e.preventDefault();
  navigate(href);
}
