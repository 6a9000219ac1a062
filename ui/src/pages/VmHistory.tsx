import { get, np } from "../api";
import { ErrorBox, Loading } from "../components";
import { usePoll } from "../hooks";
import { formatDuration, formatTime, taskKindLabel } from "../logic";
import type { TaskInfo } from "../types";

/** Task kinds that change where a VM runs or whether Pacemaker keeps it. */
export const HISTORY_KINDS = ["vmha", "vmmigrate"];

/** The HA and migration tasks of `vmid` from every member, newest first. */
export function historyOf(vmid: number, perNode: TaskInfo[][]): TaskInfo[] {
  return perNode
    .flat()
    .filter((t) => t.target === String(vmid) && HISTORY_KINDS.includes(t.kind))
    .sort((a, b) => b.start_time - a.start_time);
}

/** Every member's tasks for this VM (a migration is a task of the node it left). */
async function load(vmid: number): Promise<TaskInfo[]> {
  let nodes: string[];
  try {
    nodes = (await get<{ name: string }[]>("/cluster/nodes")).map((n) => n.name);
  } catch {
    nodes = [];
  }
  const lists = await Promise.all(
    (nodes.length ? nodes : [""]).map((n) =>
      get<TaskInfo[]>(n ? np(`/tasks?target=${vmid}&limit=200`, n) : np(`/tasks?target=${vmid}&limit=200`)).catch(() => [] as TaskInfo[]),
    ),
  );
  return historyOf(vmid, lists);
}

/** HA and migration history of a VM, across the cluster. */
export function VmHistory({ vmid }: { vmid: number }) {
  const { data, error } = usePoll(() => load(vmid), 10000, [vmid]);
  return (
    <section class="card" aria-labelledby="vm-history-title">
      <h2 id="vm-history-title">HA and migration history</h2>
      <ErrorBox error={error} title="Cannot list the history" />
      {!data && !error && <Loading what="history" />}
      {data && data.length === 0 && <p class="muted">No HA or migration task for this VM on any node.</p>}
      {data && data.length > 0 && (
        <table class="table" aria-label={`HA and migration history of VM ${vmid}`}>
          <thead><tr><th>Start</th><th>Node</th><th>Task</th><th>User</th><th>Duration</th><th>State</th><th>Message</th></tr></thead>
          <tbody>{data.map((t) => (
            <tr data-kind={t.kind} data-state={t.state}>
              <td class="nowrap">{formatTime(t.start_time)}</td><td>{t.node}</td>
              <td><a href={`/tasks?upid=${encodeURIComponent(t.upid)}`}>{taskKindLabel(t.kind)}</a></td>
              <td>{t.user}</td><td>{formatDuration(t.start_time, t.end_time)}</td><td>{t.state}</td>
              <td class="small">{t.state === "error" ? t.message : ""}</td>
            </tr>
          ))}</tbody>
        </table>
      )}
    </section>
  );
}
