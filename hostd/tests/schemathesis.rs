//! The live API checked against its own OpenAPI document by schemathesis (PyPI): a bounded
//! number of generated requests per operation (valid and invalid bodies, parameters and
//! sequences), against a real hostd on libvirt's test driver (`test:///default`: the libvirt
//! API, its XML parsing and its errors, with a simulated hypervisor private to this hostd, so
//! that arbitrary valid requests — a PUT to any vmid, a started VM — can never reach the shared
//! system libvirtd's VMs or boot QEMU guests). The run must find no server error
//! (5xx), no status code the document does not list, and no response that violates the
//! document's schema.
//!
//! Checked: `not_a_server_error`, `status_code_conformance`, `content_type_conformance`,
//! `response_schema_conformance`, `response_headers_conformance`. Not checked:
//! `positive_data_acceptance`, because the server validates more than a JSON schema can say
//! (cross-field rules such as "a disk is a pool volume, a path or a new size", names unique on
//! the node); those answers are documented 400s.
//!
//! Left out of the run, on purpose: `POST /cluster/init` and `/cluster/local-join` (they would
//! form a real corosync cluster on this host) and `POST /nodes/{node}/network/apply` (it would
//! reload this host's systemd-networkd; the test hostds' networkd directory is a scratch one).
//!
//! schemathesis must be installed (`scripts/test.sh` does it); without it this test fails.

mod common;

use std::process::Command;
use std::time::Instant;

use common::Hostd;
use serde_json::Value;

const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance";
const EXCLUDED_PATHS: &str = r"^/api/v1/(cluster/(init|local-join)|nodes/\{node\}/network/apply)$";

#[test]
fn live_api_conforms_to_its_openapi_document() {
    let found = Command::new("schemathesis").arg("--version").output();
    let version = match found {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_string(),
        _ => panic!(
            "schemathesis is not installed: `python3 -m pip install schemathesis` (scripts/test.sh installs it)"
        ),
    };
    let h = Hostd::start_on_test_driver();
    let doc = h
        .client
        .get(h.url("/api/v1/openapi.json"))
        .header("Authorization", format!("KeelAPIToken {}", h.token))
        .send()
        .unwrap_or_else(|e| panic!("openapi.json: {e}"))
        .text()
        .unwrap_or_else(|e| panic!("openapi.json: {e}"));
    let spec = h.dir.join("openapi.json");
    std::fs::write(&spec, &doc).unwrap_or_else(|e| panic!("{e}"));
    let ops = serde_json::from_str::<Value>(&doc)
        .ok()
        .and_then(|v| v["paths"].as_object().map(|p| p.len()))
        .unwrap_or(0);
    assert!(ops > 30, "the document lists only {ops} paths");

    let seed = std::env::var("KEEL_SCHEMATHESIS_SEED").unwrap_or_else(|_| "20261202".into());
    let run = |extra: &[&str]| -> (bool, String) {
        let out = Command::new("schemathesis")
            // its cache (.schemathesis/) goes into the test's own directory, not the checkout
            .current_dir(&h.dir)
            .arg("run")
            .arg(&spec)
            .args(["--url", &h.base])
            .args(["--tls-verify", "false"])
            .args(["-H", &format!("Authorization: KeelAPIToken {}", h.token)])
            .args(["--checks", CHECKS])
            .args(["--max-examples", "8"])
            .args(["--seed", &seed])
            .args(["--exclude-path-regex", EXCLUDED_PATHS])
            .args(["--request-timeout", "30"])
            // a connection dropped in its TLS handshake on a starved 2-core machine is retried
            // (seen once: "EOF occurred in violation of protocol" while a build ran beside the
            // suite); answers are still all checked
            .args(["--request-retries", "2"])
            .args(["--max-time", "90"])
            .args(["--output-truncate", "false"])
            .args(extra)
            .env("NO_COLOR", "1")
            .env("SCHEMATHESIS_HOOKS", "")
            .output()
            .unwrap_or_else(|e| panic!("cannot run schemathesis: {e}"));
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    };
    let t0 = Instant::now();
    let (mut ok, text) = run(&["--workers", "2"]);
    let took = t0.elapsed();

    eprintln!(
        "{}",
        text.lines()
            .rev()
            .take(30)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    );
    eprintln!(
        "METRIC schemathesis {version}: {ops} paths, seed {seed}, {:.1}s",
        took.as_secs_f64()
    );
    // CPython 3.11's AST constructor can raise "AST constructor recursion depth mismatch" while
    // Hypothesis reads a lambda's source to describe a strategy: an error inside the tool, not
    // an answer of hostd's. When every error of the run is that one (and no test case failed),
    // each operation it hit is run again, alone, in the phase it hit; those runs must pass.
    if !ok {
        if let Some(retry) = tool_only_errors(&text) {
            eprintln!(
                "schemathesis hit the CPython AST bug on {retry:?}; running those operations again alone"
            );
            ok = retry.iter().all(|(method, path)| {
                let (ok1, text1) = run(&[
                    "--workers",
                    "1",
                    "--phases",
                    "coverage",
                    "--include-method",
                    method,
                    "--include-path",
                    path,
                ]);
                if !ok1 {
                    eprintln!("rerun of {method} {path} failed:\n{text1}");
                }
                ok1
            });
        }
    }
    assert!(
        ok,
        "schemathesis found failures against the live API (seed {seed}; replay with KEEL_SCHEMATHESIS_SEED):\n{text}\nhostd log:\n{}",
        h.log()
    );
}

/// The operations (method, path) of a run whose only errors are CPython's AST recursion bug
/// inside Hypothesis and in which no test case failed; `None` when anything else went wrong.
fn tool_only_errors(text: &str) -> Option<Vec<(String, String)>> {
    const BUG: &str = "AST constructor recursion depth mismatch";
    // "4377 generated, 4377 passed": every generated case passed
    let summary_ok = text.lines().any(|l| {
        let w: Vec<&str> = l.split_whitespace().collect();
        w.len() == 4 && w[1] == "generated," && w[3] == "passed" && w[0] == w[2]
    });
    if !summary_ok || text.contains("FAILURES") {
        return None;
    }
    let errors = text.split("= ERRORS =").nth(1)?;
    let errors = errors.split("= SUMMARY =").next()?;
    let mut ops = Vec::new();
    for block in errors.split("\n___").skip(1) {
        let head = block.lines().next()?.trim_matches(|c| c == '_' || c == ' ');
        let (method, path) = head.split_once(' ')?;
        if !block.contains(BUG) {
            return None;
        }
        ops.push((method.to_string(), path.to_string()));
    }
    (!ops.is_empty()).then_some(ops)
}

#[test]
fn only_the_cpython_ast_bug_is_retried() {
    let run = |errors: &str, cases: &str| {
        format!("Coverage\n==== ERRORS ====\n{errors}\n==== SUMMARY ====\nTest cases:\n  {cases}\n")
    };
    let bug = "___ POST /api/v1/cluster/fencing/{node}/test ___\nRuntime Error\n\nAST constructor recursion depth mismatch (before=66, after=200)\n";
    assert_eq!(
        tool_only_errors(&run(bug, "4377 generated, 4377 passed")),
        Some(vec![(
            "POST".to_string(),
            "/api/v1/cluster/fencing/{node}/test".to_string()
        )])
    );
    // a failed case, or any other error, is never retried away
    assert_eq!(
        tool_only_errors(&run(bug, "4377 generated, 4376 passed")),
        None
    );
    let other = "___ GET /api/v1/version ___\nServer error\n";
    assert_eq!(
        tool_only_errors(&run(&format!("{bug}{other}"), "10 generated, 10 passed")),
        None
    );
}
