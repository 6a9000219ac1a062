//! Golden files for the domain XML model, one case per file pair:
//! - `golden/render/NAME.json` (`{"spec": VmSpec, "ctx": RenderCtx}`) → `NAME.xml`, exact;
//! - `golden/parse/NAME.xml` (libvirt's own XML) → `NAME.json` (the parsed spec and facts);
//! - `golden/invalid/NAME.json` (a VmSpec) → `NAME.err` (the exact validation error).
//!
//! Regenerate on purpose only: `KEEL_BLESS=1 cargo test -p keel-hostd --test golden`.

use std::path::{Path, PathBuf};

use hostd::domain::{self, RenderCtx};
use keel_api::vm::VmSpec;
use serde::Deserialize;

#[derive(Deserialize)]
struct RenderCase {
    spec: VmSpec,
    ctx: RenderCtx,
}

fn cases(dir: &str, ext: &str) -> Vec<PathBuf> {
    let d = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(dir);
    let mut v: Vec<PathBuf> = std::fs::read_dir(&d)
        .unwrap_or_else(|e| panic!("{}: {e}", d.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no golden cases in {}", d.display());
    v
}

fn check(expected_path: &Path, actual: &str) -> Result<(), String> {
    if std::env::var_os("KEEL_BLESS").is_some() {
        std::fs::write(expected_path, actual).map_err(|e| e.to_string())?;
        return Ok(());
    }
    let expected = std::fs::read_to_string(expected_path).map_err(|e| {
        format!(
            "{}: {e} (run with KEEL_BLESS=1 to create it)",
            expected_path.display()
        )
    })?;
    if expected != actual {
        return Err(format!(
            "{} differs:\n--- expected\n{expected}\n--- actual\n{actual}",
            expected_path.display()
        ));
    }
    Ok(())
}

fn run_all(failures: Vec<String>) {
    if !failures.is_empty() {
        panic!(
            "{} golden case(s) failed:\n{}",
            failures.len(),
            failures.join("\n\n")
        );
    }
}

#[test]
fn render_spec_to_exact_xml() {
    let mut failures = Vec::new();
    for case in cases("render", "json") {
        let text = std::fs::read_to_string(&case).unwrap_or_else(|e| panic!("{e}"));
        let c: RenderCase =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", case.display()));
        if let Err(e) = c.spec.validate() {
            failures.push(format!("{}: spec invalid: {e}", case.display()));
            continue;
        }
        match domain::render(&c.spec, &c.ctx) {
            Ok(xml) => {
                if let Err(e) = check(&case.with_extension("xml"), &xml) {
                    failures.push(e);
                }
                // Whatever Keel renders, it must read back as the same spec.
                match domain::parse(&xml) {
                    Ok(p) if p.spec == c.spec => {}
                    Ok(p) => failures.push(format!(
                        "{}: round trip changed the spec:\n{}\nvs\n{}",
                        case.display(),
                        serde_json::to_string_pretty(&c.spec).unwrap_or_default(),
                        serde_json::to_string_pretty(&p.spec).unwrap_or_default()
                    )),
                    Err(e) => {
                        failures.push(format!("{}: cannot parse own XML: {e}", case.display()))
                    }
                }
            }
            Err(e) => failures.push(format!("{}: render failed: {e}", case.display())),
        }
    }
    run_all(failures);
}

#[test]
fn parse_libvirt_xml_to_spec() {
    let mut failures = Vec::new();
    for case in cases("parse", "xml") {
        let xml = std::fs::read_to_string(&case).unwrap_or_else(|e| panic!("{e}"));
        match domain::parse(&xml) {
            Ok(p) => {
                let json = serde_json::to_string_pretty(&p).unwrap_or_default() + "\n";
                if let Err(e) = check(&case.with_extension("json"), &json) {
                    failures.push(e);
                }
            }
            Err(e) => failures.push(format!("{}: {e}", case.display())),
        }
    }
    run_all(failures);
}

#[test]
fn invalid_spec_gives_exact_error() {
    let mut failures = Vec::new();
    for case in cases("invalid", "json") {
        let text = std::fs::read_to_string(&case).unwrap_or_else(|e| panic!("{e}"));
        // Shape errors (unknown field, wrong type) and semantic errors both count.
        let msg = match serde_json::from_str::<VmSpec>(&text) {
            Err(e) => format!("parse: {e}\n"),
            Ok(spec) => match spec.validate() {
                Ok(()) => {
                    failures.push(format!(
                        "{}: spec is valid, expected an error",
                        case.display()
                    ));
                    continue;
                }
                Err(e) => format!("{}: {}\n", e.field, e.message),
            },
        };
        if let Err(e) = check(&case.with_extension("err"), &msg) {
            failures.push(e);
        }
    }
    run_all(failures);
}
