import { useCallback, useEffect, useRef, useState } from "preact/hooks";
import { ApiError } from "./api";

/** Load data and refresh it every `intervalMs` (0 = once) without blanking the page. */
export function usePoll<T>(load: () => Promise<T>, intervalMs: number, deps: unknown[] = []) {
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState<ApiError | null>(null);
  const loadRef = useRef(load);
  loadRef.current = load;
  const [tick, setTick] = useState(0);
  const refresh = useCallback(() => setTick((t) => t + 1), []);
  useEffect(() => {
    let alive = true;
    let timer: number | undefined;
    const run = async () => {
      try {
        const d = await loadRef.current();
        if (!alive) return;
        setData(d);
        setError(null);
      } catch (e) {
        if (!alive) return;
        setError(e instanceof ApiError ? e : new ApiError(0, "client", String(e)));
      }
      if (alive && intervalMs > 0) timer = window.setTimeout(run, intervalMs);
    };
    run();
    return () => { alive = false; if (timer) clearTimeout(timer); };
  }, [...deps, tick, intervalMs]);
  return { data, error, refresh, setData };
}
