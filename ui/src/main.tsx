import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import "./styles.css";
import { getTask, logout, onRecentTasks, session, setExpiredHandler } from "./api";
import { TaskStateBadge } from "./components";
import { taskKindLabel } from "./logic";
import { linkClick, navigate, useRoute } from "./router";
import type { TaskInfo } from "./types";
import { Login } from "./pages/Login";
import { Overview } from "./pages/Overview";
import { VmList } from "./pages/VmList";
import { CreateVm } from "./pages/CreateVm";
import { VmPage } from "./pages/VmPage";
import { Storage } from "./pages/Storage";
import { Tasks } from "./pages/Tasks";

setExpiredHandler(() => {
  session.clear();
  const here = location.pathname + location.search;
  if (location.pathname !== "/login")
    navigate(`/login?expired=1&next=${encodeURIComponent(here)}`, true);
});

const NAV: [string, string][] = [
  ["/", "Overview"],
  ["/vms", "Virtual machines"],
  ["/storage", "Storage"],
  ["/tasks", "Tasks"],
];

function TaskBar() {
  const [upids, setUpids] = useState<string[]>([]);
  const [tasks, setTasks] = useState<Record<string, TaskInfo>>({});
  useEffect(() => onRecentTasks(setUpids), []);
  useEffect(() => {
    if (!upids.length) return;
    let alive = true;
    const poll = async () => {
      const out: Record<string, TaskInfo> = {};
      await Promise.all(upids.map(async (u) => { try { out[u] = await getTask(u); } catch { /* gone */ } }));
      if (!alive) return;
      setTasks(out);
      if (Object.values(out).some((t) => t.state === "running")) timer = window.setTimeout(poll, 1500);
    };
    let timer = window.setTimeout(poll, 0);
    return () => { alive = false; clearTimeout(timer); };
  }, [upids]);
  const list = upids.map((u) => tasks[u]).filter(Boolean);
  if (!list.length) return null;
  return (
    <aside class="taskbar" aria-label="Recent tasks">
      <span class="taskbar-title">Recent tasks</span>
      {list.map((t) => (
        <a class="taskbar-item" href={`/tasks?upid=${encodeURIComponent(t.upid)}`} title={t.message ?? ""}>
          <TaskStateBadge state={t.state} /> {taskKindLabel(t.kind)} <span class="mono">{t.target}</span>
        </a>
      ))}
    </aside>
  );
}

function Shell() {
  const route = useRoute();
  const p = route.path;
  if (p === "/login" || !session.loggedIn) {
    if (p !== "/login") {
      // Not signed in: show the login page, keeping the route to come back to.
      const to = `/login?next=${encodeURIComponent(p + location.search)}`;
      history.replaceState(null, "", to);
      return <Login query={new URLSearchParams(to.slice(to.indexOf("?")))} />;
    }
    return <Login query={route.query} />;
  }
  let page;
  let m: RegExpMatchArray | null;
  if (p === "/") page = <Overview />;
  else if (p === "/vms") page = <VmList />;
  else if (p === "/vms/new") page = <CreateVm />;
  else if ((m = p.match(/^\/vms\/(\d+)$/))) page = <VmPage vmid={Number(m[1])} tab={route.query.get("tab") ?? "summary"} />;
  else if (p === "/storage") page = <Storage pool={route.query.get("pool")} />;
  else if (p === "/tasks") page = <Tasks upid={route.query.get("upid")} />;
  else page = (
    <section>
      <h1>Page not found</h1>
      <p>There is nothing at <code>{p}</code>. <a href="/">Go to the overview</a>.</p>
    </section>
  );
  const active = (href: string) => href === "/" ? p === "/" : p === href || p.startsWith(href + "/");
  return (
    <div class="layout" onClick={linkClick}>
      <header class="topbar">
        <a class="brand" href="/" aria-label="Keel home"><span class="brand-mark" aria-hidden="true">K</span>Keel</a>
        <span class="topbar-node">Node <strong>{session.node}</strong></span>
        <span class="spacer" />
        <span class="topbar-user">Signed in as <strong>{session.user}</strong></span>
        <button type="button" class="btn btn-ghost" onClick={async () => { await logout(); navigate("/login?loggedout=1"); }}>Log out</button>
      </header>
      <nav class="sidebar" aria-label="Main">
        <ul>
          {NAV.map(([href, label]) => (
            <li><a href={href} class={active(href) ? "active" : ""} aria-current={active(href) ? "page" : undefined}>{label}</a></li>
          ))}
        </ul>
      </nav>
      <main class="content" id="main">{page}</main>
      <TaskBar />
    </div>
  );
}

render(<Shell />, document.getElementById("app")!);
