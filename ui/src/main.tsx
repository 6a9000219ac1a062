import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import "./styles.css";
import { currentNode, get, getTask, logout, onNodeChange, onRecentTasks, selectNode, session, setExpiredHandler } from "./api";
import { effectiveNode, isStandalone, nodeList, type NodeEntry } from "./cluster";
import { usePoll } from "./hooks";
import { TaskStateBadge } from "./components";
import { taskKindLabel } from "./logic";
import { linkClick, navigate, useRoute } from "./router";
import type { ClusterStatus, NodeInfo, TaskInfo } from "./types";
import { Login } from "./pages/Login";
import { Overview } from "./pages/Overview";
import { VmList } from "./pages/VmList";
import { CreateVm } from "./pages/CreateVm";
import { VmPage } from "./pages/VmPage";
import { Storage } from "./pages/Storage";
import { Networks } from "./pages/Networks";
import { HostNetwork } from "./pages/HostNetwork";
import { Ha } from "./pages/Ha";
import { Tasks } from "./pages/Tasks";
import { Cluster } from "./pages/Cluster";
import { Access } from "./pages/Access";
import { BackupJobs } from "./pages/BackupJobs";
import { can, usePermissions } from "./access";

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
  ["/networks", "Networks"],
  ["/host-network", "Host network"],
  ["/backup-jobs", "Backup jobs"],
  ["/tasks", "Tasks"],
  ["/cluster", "Cluster"],
  ["/ha", "High availability"],
  ["/access", "Access"],
];

/** Pages shown only with a privilege (access: hidden from who may not use them). */
const NAV_NEEDS: Record<string, [string, string]> = {
  "/cluster": ["Cluster.Audit", "/cluster"],
  "/ha": ["Cluster.Audit", "/cluster"],
};

/** Node-scoped pages (the node list switches which node they show). */
const NODE_SCOPED = /^\/($|vms|storage|networks|host-network|tasks|backup-jobs)/;

/** The cluster's nodes (or this node alone), with online state; a click selects one. */
function NodeList({ nodes, current, error, clusterName }: {
  nodes: NodeEntry[]; current: string; error: string | null; clusterName: string | null;
}) {
  const route = useRoute();
  const pick = (n: string) => {
    selectNode(n);
    // A VM page belongs to one node: go to the VM list of the new one.
    if (/^\/vms\/\d+/.test(route.path)) navigate("/vms");
    else if (!NODE_SCOPED.test(route.path)) navigate("/");
  };
  return (
    <div class="nodelist" role="group" aria-label="Nodes">
      <p class="nodelist-title">{clusterName ? <>Cluster <span class="mono">{clusterName}</span></> : "Node"}</p>
      {error && <p class="small warn-text nodelist-error" title={error}>{error}</p>}
      <ul>{nodes.map((n) => {
        const state = n.online === null ? "unknown" : n.online ? "online" : "offline";
        return (
          <li><button type="button" class={`node-item${n.name === current ? " active" : ""}`} data-node={n.name} data-state={state}
            aria-pressed={n.name === current} aria-label={`Node ${n.name} (${state}${n.local ? ", this node" : ""})`}
            onClick={() => pick(n.name)}>
            <span class={`node-dot node-${state}`} aria-hidden="true" />
            <span class="node-name" title={n.name}>{n.name}</span>
            {n.local && <span class="node-local muted small">local</span>}
          </button></li>
        );
      })}</ul>
    </div>
  );
}

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
  const [node, setNode] = useState(currentNode());
  useEffect(() => onNodeChange(setNode), []);
  const loggedIn = session.loggedIn && p !== "/login";
  const perms = usePermissions();
  // The node list: the cluster's members, or this node alone (hostd's /nodes, then the session's).
  const cluster = usePoll(() => loggedIn ? get<ClusterStatus>("/cluster/status") : Promise.resolve(undefined), loggedIn ? 10000 : 0, [loggedIn]);
  const standalone = !cluster.data || isStandalone(cluster.data);
  const hostNodes = usePoll(
    () => loggedIn && standalone ? get<NodeInfo[]>("/nodes") : Promise.resolve(undefined), 0, [loggedIn, standalone]);
  const nodes = nodeList(cluster.data, hostNodes.data, session.node);
  const listed = cluster.data || hostNodes.data ? nodes : null;
  const shown = effectiveNode(node, listed, session.node);
  useEffect(() => { if (loggedIn && shown !== currentNode()) selectNode(shown); }, [shown, loggedIn]);
  if (p === "/login" || !session.loggedIn) {
    if (p !== "/login") {
      // Not signed in: show the login page, keeping the route to come back to.
      // (From the route, not `location`: this render may repeat after the URL became /login.)
      const qs = route.query.toString();
      const to = `/login?next=${encodeURIComponent(p + (qs ? `?${qs}` : ""))}`;
      if (location.pathname + location.search !== to) history.replaceState(null, "", to);
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
  else if (p === "/networks") page = <Networks />;
  else if (p === "/host-network") page = <HostNetwork />;
  else if (p === "/tasks") page = <Tasks upid={route.query.get("upid")} />;
  else if (p === "/cluster") page = <Cluster />;
  else if (p === "/ha") page = <Ha />;
  else if (p === "/backup-jobs") page = <BackupJobs />;
  else if (p === "/access") page = <Access tab={route.query.get("tab") ?? "tokens"} />;
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
        {cluster.data?.clustered && <span class="topbar-node">Cluster <strong>{cluster.data.name}</strong></span>}
        <span class="topbar-node">Node <strong data-testid="current-node">{shown}</strong></span>
        <span class="spacer" />
        <span class="topbar-user">Signed in as <strong>{session.user}</strong></span>
        <button type="button" class="btn btn-ghost" onClick={async () => { await logout(); navigate("/login?loggedout=1"); }}>Log out</button>
      </header>
      <nav class="sidebar" aria-label="Main">
        <ul>
          {NAV.filter(([href]) => !NAV_NEEDS[href] || can(perms, ...NAV_NEEDS[href])).map(([href, label]) => (
            <li><a href={href} class={active(href) ? "active" : ""} aria-current={active(href) ? "page" : undefined}>{label}</a></li>
          ))}
        </ul>
        <NodeList nodes={nodes} current={shown} clusterName={cluster.data?.clustered ? cluster.data.name : null}
          error={cluster.error && cluster.error.status !== 403 ? `cluster status: ${cluster.error.message}` : hostNodes.error ? hostNodes.error.message : null} />
      </nav>
      {/* Node-scoped pages remount when another node is selected, so they reload from it. */}
      <main class="content" id="main" key={NODE_SCOPED.test(p) ? shown : "cluster-wide"}>{page}</main>
      <TaskBar />
    </div>
  );
}

render(<Shell />, document.getElementById("app")!);
