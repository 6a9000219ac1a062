import { useCallback, useEffect, useRef, useState } from "preact/hooks";
import { ApiError } from "./api";

/**
 * Load data and refresh it every `intervalMs` (0 = once) without blanking the page. Polling
 * pauses while the tab is hidden and catches up as soon as it is shown again.
 */
export function usePoll<T>(load: () => Promise<T>, intervalMs: number, deps: unknown[] = []) {
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState<ApiError | null>(null);
  const [loadedAt, setLoadedAt] = useState<number | null>(null);
  const loadRef = useRef(load);
  loadRef.current = load;
  const [tick, setTick] = useState(0);
  const refresh = useCallback(() => setTick((t) => t + 1), []);
  useEffect(() => {
    let alive = true;
    let timer: number | undefined;
    let waiting = false; // a refresh fell due while the tab was hidden
    const fetchOnce = async () => {
      try {
        const d = await loadRef.current();
        if (!alive) return;
        setData(d);
        setError(null);
        setLoadedAt(Date.now());
      } catch (e) {
        if (!alive) return;
        setError(e instanceof ApiError ? e : new ApiError(0, "client", String(e)));
      }
      if (alive && intervalMs > 0) timer = window.setTimeout(tickFn, intervalMs);
    };
    const tickFn = () => {
      timer = undefined;
      if (document.hidden) { waiting = true; return; }
      fetchOnce();
    };
    const onVisible = () => {
      if (alive && !document.hidden && waiting) { waiting = false; fetchOnce(); }
    };
    document.addEventListener("visibilitychange", onVisible);
    // The first load happens even in a hidden tab, so a page never stays empty.
    fetchOnce();
    return () => { alive = false; if (timer) clearTimeout(timer); document.removeEventListener("visibilitychange", onVisible); };
  }, [...deps, tick, intervalMs]);
  return { data, error, refresh, setData, loadedAt };
}
