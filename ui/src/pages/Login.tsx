import { useState } from "preact/hooks";
import { ApiError, login } from "../api";
import { navigate } from "../router";

export function Login({ query }: { query: URLSearchParams }) {
  const [username, setUsername] = useState("root");
  const [password, setPassword] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const expired = query.get("expired") === "1";
  const loggedOut = query.get("loggedout") === "1";
  const nextPage = query.get("next");
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await login(username, password);
      const next = query.get("next");
      navigate(next && next.startsWith("/") && !next.startsWith("/login") ? next : "/", true);
    } catch (err) {
      const a = err as ApiError;
      setError(a.status === 401 ? "Wrong user name or password." : a.message);
      // a refused password is not kept in the field (nor offered again by the browser)
      setPassword("");
      setBusy(false);
    }
  };
  return (
    <div class="login-page">
      <form class="login-card" onSubmit={submit} aria-labelledby="login-title">
        <div class="login-brand"><span class="brand-mark" aria-hidden="true">K</span> Keel</div>
        <h1 id="login-title">Sign in</h1>
        {expired && !error && <div class="alert alert-warn" role="status">Your session expired. Sign in again to continue where you were.</div>}
        {loggedOut && !error && <div class="alert alert-info" role="status">You are signed out.</div>}
        {!expired && !loggedOut && !error && nextPage && nextPage !== "/" &&
          <div class="alert alert-info" role="status">Sign in to continue to <code>{nextPage}</code>.</div>}
        {error && <div class="alert alert-error" role="alert">{error}</div>}
        <div class="field">
          <label for="login-user">User name</label>
          <input id="login-user" name="username" autoComplete="username" value={username}
            onInput={(e) => setUsername(e.currentTarget.value)} required />
        </div>
        <div class="field">
          <label for="login-pass">Password</label>
          <input id="login-pass" name="password" type="password" autoComplete="current-password" value={password}
            onInput={(e) => setPassword(e.currentTarget.value)} required autoFocus />
        </div>
        <button class="btn btn-primary btn-block" type="submit" disabled={busy}>{busy ? "Signing in…" : "Sign in"}</button>
        <p class="hint">The root password of a new node is in <code>/var/lib/keel/root-password</code>.</p>
      </form>
    </div>
  );
}
