import { useState } from "preact/hooks";
import { ApiError, get } from "../api";
import { Badge, ErrorBox } from "../components";

/** One finding of `GET /api/v1/cluster/verify` (keel-api's `verify::Finding`). */
export interface Finding {
  code: string;
  severity: "error" | "warning";
  node: string | null;
  object: string;
  message: string;
  action: string;
}

/** keel-api's `verify::VerifyReport`. */
export interface VerifyReport {
  cluster: string;
  checked_by: string;
  nodes: string[];
  findings: Finding[];
  errors: number;
  warnings: number;
}

/** The summary line of a report. */
export function verifySummary(r: VerifyReport): { tone: "ok" | "warn" | "bad"; text: string } {
  const tone = r.errors > 0 ? "bad" : r.warnings > 0 ? "warn" : "ok";
  const text = r.errors === 0 && r.warnings === 0
    ? `No findings on ${r.nodes.length} node(s)`
    : `${r.errors} error(s), ${r.warnings} warning(s) on ${r.nodes.length} node(s)`;
  return { tone, text };
}

/**
 * "Verify": runs `keel cluster verify` on demand (it asks every member for its facts, so it is
 * not polled) and lists the findings with severity, code, node, object and what to do.
 */
export function VerifyPanel() {
  const [report, setReport] = useState<VerifyReport | null>(null);
  const [error, setError] = useState<ApiError | Error | null>(null);
  const [busy, setBusy] = useState(false);
  const run = async () => {
    setBusy(true); setError(null);
    try {
      setReport(await get<VerifyReport>("/cluster/verify"));
    } catch (e) {
      setError(e as Error);
    } finally {
      setBusy(false);
    }
  };
  const sum = report ? verifySummary(report) : null;
  return (
    <section class="panel" aria-labelledby="verify-title">
      <div class="panel-head">
        <h2 id="verify-title">Verify</h2>
        <span class="spacer" />
        <button type="button" class="btn btn-sm" onClick={run} disabled={busy}>{busy ? "Verifying…" : "Run verify"}</button>
      </div>
      <p class="small muted">Checks fencing, corosync links, clocks, name resolution, key files, corosync.conf on every
        member, and the networks and storage pools VMs need (same as <span class="mono">keel cluster verify</span>).</p>
      <ErrorBox error={error} title="Verify failed" />
      {report && sum && (
        <>
          <p data-testid="verify-summary"><Badge tone={sum.tone}>{sum.text}</Badge>{" "}
            <span class="small muted">checked by {report.checked_by}</span></p>
          {report.findings.length > 0 && (
            <table class="table" aria-label="Verify findings">
              <thead><tr><th>Severity</th><th>Code</th><th>Node</th><th>Object</th><th>Finding</th></tr></thead>
              <tbody>{report.findings.map((f) => (
                <tr data-code={f.code} data-severity={f.severity}>
                  <td><Badge tone={f.severity === "error" ? "bad" : "warn"}>{f.severity}</Badge></td>
                  <td class="mono">{f.code}</td>
                  <td>{f.node ?? "—"}</td>
                  <td class="mono small">{f.object}</td>
                  <td>{f.message}<div class="small muted">{f.action}</div></td>
                </tr>
              ))}</tbody>
            </table>
          )}
        </>
      )}
    </section>
  );
}
