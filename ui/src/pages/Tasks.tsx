import { useEffect, useRef, useState } from "preact/hooks";
import { getTask, getTaskLog, get, np } from "../api";
import { Empty, ErrorBox, Loading, TaskStateBadge } from "../components";
import { usePoll } from "../hooks";
import { formatClock, formatDuration, formatTime, taskKindLabel } from "../logic";
import { navigate } from "../router";
import type { TaskInfo, TaskLogLine } from "../types";

export function Tasks({ upid }: { upid: string | null }) {
  const [runningOnly, setRunningOnly] = useState(false);
  const [target, setTarget] = useState("");
  const q = new URLSearchParams({ limit: "100" });
  if (runningOnly) q.set("running", "true");
  if (target.trim()) q.set("target", target.trim());
  const { data, error } = usePoll(() => get<TaskInfo[]>(np(`/tasks?${q}`)), 3000, [runningOnly, target]);
  return (
    <section aria-labelledby="tasks-title">
      <div class="page-head"><h1 id="tasks-title">Tasks</h1></div>
      <div class="toolbar">
        <div class="field-inline"><label for="task-target">Target</label>
          <input id="task-target" type="search" placeholder="vmid or pool@volume" value={target} onInput={(e) => setTarget(e.currentTarget.value)} /></div>
        <label class="check"><input type="checkbox" checked={runningOnly} onChange={(e) => setRunningOnly(e.currentTarget.checked)} /> Running only</label>
      </div>
      <div class={upid ? "split" : ""}>
        <div class="split-main">
          <ErrorBox error={error} title="Cannot list tasks" />
          {!data && !error && <Loading what="tasks" />}
          {data && data.length === 0 && <Empty title="No tasks">Every change (create, start, stop, upload…) is recorded here as a task.</Empty>}
          {data && data.length > 0 && (
            <table class="table" aria-label="Tasks">
              <thead><tr><th>Start</th><th>Task</th><th>Target</th><th>User</th><th class="num">Duration</th><th>State</th></tr></thead>
              <tbody>{data.map((t) => (
                <tr class={t.upid === upid ? "selected" : ""} data-kind={t.kind} data-target={t.target}>
                  <td class="nowrap">{formatTime(t.start_time)}</td>
                  <td class="nowrap"><a href={`/tasks?upid=${encodeURIComponent(t.upid)}`} title={t.kind} aria-label={`Log of ${taskKindLabel(t.kind)} ${t.target}, ${formatTime(t.start_time)}`}>{taskKindLabel(t.kind)}</a></td>
                  <td class="mono">{/^\d+$/.test(t.target) ? <a href={`/vms/${t.target}`}>{t.target}</a> : t.target}</td>
                  <td>{t.user}</td>
                  <td class="num">{formatDuration(t.start_time, t.end_time)}</td>
                  <td><TaskStateBadge state={t.state} />{t.state === "running" && t.progress != null ? <span class="small"> {Math.round(t.progress * 100)}%</span> : null}</td>
                </tr>
              ))}</tbody>
            </table>
          )}
        </div>
        {upid && <TaskLog upid={upid} />}
      </div>
    </section>
  );
}

export function TaskLog({ upid }: { upid: string }) {
  const [task, setTask] = useState<TaskInfo | null>(null);
  const [lines, setLines] = useState<TaskLogLine[]>([]);
  const [error, setError] = useState<string | null>(null);
  const pre = useRef<HTMLPreElement>(null);
  useEffect(() => {
    let alive = true;
    let next = 0;
    let timer: number | undefined;
    setLines([]);
    setTask(null);
    const poll = async () => {
      try {
        const t = await getTask(upid);
        const l = await getTaskLog(upid, next);
        if (!alive) return;
        if (l.length) { next = l[l.length - 1].n + 1; setLines((old) => [...old, ...l]); }
        setTask(t);
        if (t.state === "running") timer = window.setTimeout(poll, 1000);
      } catch (e) { if (alive) setError((e as Error).message); }
    };
    poll();
    return () => { alive = false; clearTimeout(timer); };
  }, [upid]);
  useEffect(() => { if (pre.current) pre.current.scrollTop = pre.current.scrollHeight; }, [lines]);
  return (
    <aside class="panel task-log" aria-label="Task log">
      <div class="panel-head">
        <h2>{task ? `${taskKindLabel(task.kind)} ${task.target}` : "Task"}</h2>
        <button type="button" class="btn btn-sm btn-ghost" onClick={() => navigate("/tasks")} aria-label="Close task log">Close</button>
      </div>
      <ErrorBox error={error ? { message: error } : null} />
      {!task && !error && <Loading what="task" />}
      {task && (
        <dl class="kv small">
          <dt>State</dt><dd><TaskStateBadge state={task.state} /> {task.message && task.state !== "running" ? task.message : ""}</dd>
          <dt>Started</dt><dd>{formatTime(task.start_time)} by {task.user}</dd>
          <dt>Duration</dt><dd>{formatDuration(task.start_time, task.end_time)}</dd>
          {task.progress != null && <><dt>Progress</dt><dd>{Math.round(task.progress * 100)}%</dd></>}
          <dt>UPID</dt><dd class="mono wrap">{task.upid}</dd>
        </dl>
      )}
      <pre class="log" ref={pre} aria-label="Log lines" tabIndex={0}>
        {lines.length ? lines.map((l) => `${formatClock(l.t)}  ${l.line}`).join("\n") : task?.state === "running" ? "Waiting for output…" : "(no log lines)"}
      </pre>
    </aside>
  );
}
