//! Golden files for the answer file, one case per file set:
//! - `golden/good/NAME.toml` + `NAME.hw.json` (node index, NICs, disks) → `NAME.plan.json`,
//!   `NAME.debian.txt` (every Debian file, `==> PATH (MODE) <==` then content) and `NAME.ks`
//!   (the RHEL kickstart, also checked by pykickstart's `ksvalidator`);
//! - `golden/bad/NAME.toml` (+ optional `NAME.hw.json`) → `NAME.err`, the exact list of problems.
//!
//! Regenerate on purpose only: `KEEL_BLESS=1 cargo test -p keel-installer --test golden`.

use std::path::{Path, PathBuf};

use installer::hw::{DiskInfo, Hardware, NicInfo};
use installer::render;
use installer::Error;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Hw {
    #[serde(default)]
    node_index: Option<u32>,
    #[serde(default)]
    nics: Vec<NicInfo>,
    #[serde(default)]
    disks: Vec<DiskInfo>,
}

fn cases(dir: &str) -> Vec<PathBuf> {
    let d = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(dir);
    let mut v: Vec<PathBuf> = std::fs::read_dir(&d)
        .unwrap_or_else(|e| panic!("{}: {e}", d.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no golden cases in {}", d.display());
    v
}

fn sibling(case: &Path, suffix: &str) -> PathBuf {
    let stem = case
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    case.with_file_name(format!("{stem}{suffix}"))
}

fn load_hw(case: &Path) -> Option<Hw> {
    let p = sibling(case, ".hw.json");
    let text = std::fs::read_to_string(&p).ok()?;
    Some(serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
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

fn ksvalidator(path: &Path) -> Result<(), String> {
    let out = std::process::Command::new("ksvalidator")
        .arg(path)
        .output()
        .map_err(|e| {
            format!("cannot run ksvalidator ({e}); install it with `pip install pykickstart`")
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}: ksvalidator failed:\n{}{}",
            path.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

#[test]
fn good_answers_render_exact_files() {
    let mut failures = Vec::new();
    for case in cases("good") {
        let text = std::fs::read_to_string(&case).unwrap_or_else(|e| panic!("{e}"));
        let hw = load_hw(&case).unwrap_or_else(|| panic!("{}: no .hw.json", case.display()));
        let hardware = Hardware {
            nics: hw.nics,
            disks: hw.disks,
        };
        let planned = installer::parse_answer(&text)
            .and_then(|a| installer::plan::plan(&a, hw.node_index, &hardware));
        let plan = match planned {
            Ok(p) => p,
            Err(e) => {
                failures.push(format!("{}: {e}", case.display()));
                continue;
            }
        };
        let json = serde_json::to_string_pretty(&plan).unwrap_or_default() + "\n";
        if let Err(e) = check(&sibling(&case, ".plan.json"), &json) {
            failures.push(e);
        }
        let deb = render::combined(&render::debian::render(&plan));
        if let Err(e) = check(&sibling(&case, ".debian.txt"), &deb) {
            failures.push(e);
        }
        match render::rhel::render(&plan) {
            Ok(ks) => {
                let ks_path = sibling(&case, ".ks");
                match check(&ks_path, &ks) {
                    Ok(()) => {
                        if let Err(e) = ksvalidator(&ks_path) {
                            failures.push(e);
                        }
                    }
                    Err(e) => failures.push(e),
                }
            }
            Err(e) => failures.push(format!("{}: kickstart: {e}", case.display())),
        }
    }
    run_all(failures);
}

#[test]
fn bad_answers_give_exact_errors() {
    let mut failures = Vec::new();
    let all = cases("bad");
    assert!(
        all.len() >= 20,
        "want at least 20 bad cases, have {}",
        all.len()
    );
    for case in all {
        let text = std::fs::read_to_string(&case).unwrap_or_else(|e| panic!("{e}"));
        let result = match load_hw(&case) {
            Some(hw) => {
                let hardware = Hardware {
                    nics: hw.nics,
                    disks: hw.disks,
                };
                installer::parse_answer(&text)
                    .and_then(|a| installer::plan::plan(&a, hw.node_index, &hardware))
                    .map(|_| ())
            }
            None => installer::load_answer(&text).map(|_| ()),
        };
        match result {
            Ok(()) => failures.push(format!("{}: accepted, expected errors", case.display())),
            Err(Error::Invalid(issues)) => {
                if let Err(e) = check(&sibling(&case, ".err"), &issues.to_string()) {
                    failures.push(e);
                }
            }
        }
    }
    run_all(failures);
}

#[test]
fn ksvalidator_rejects_a_broken_kickstart() {
    // Proves the validator is really consulted, not silently passing.
    let dir = std::env::temp_dir().join(format!("keel-ks-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let p = dir.join("broken.ks");
    std::fs::write(&p, "network --bondslave=eth0\nnosuchcommand --x\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let r = ksvalidator(&p);
    let _ = std::fs::remove_dir_all(&dir);
    let err = r.expect_err("ksvalidator accepted a broken kickstart");
    assert!(!err.contains("cannot run ksvalidator"), "{err}");
}

/// hostd's day-2 changes start from the node's files read back with `netcfg::parse`: for every
/// golden plan, reading the rendered networkd files gives a model that renders the same files.
#[test]
fn rendered_network_files_read_back_to_the_same_files() {
    let mut failures = Vec::new();
    for case in cases("good") {
        let text = std::fs::read_to_string(&case).unwrap_or_else(|e| panic!("{e}"));
        let hw = load_hw(&case).unwrap_or_else(|| panic!("{}: no .hw.json", case.display()));
        let hardware = Hardware {
            nics: hw.nics,
            disks: hw.disks,
        };
        let plan = installer::parse_answer(&text)
            .and_then(|a| installer::plan::plan(&a, hw.node_index, &hardware))
            .unwrap_or_else(|e| panic!("{}: {e}", case.display()));
        let files = render::debian::network_files(&plan);
        let pairs: Vec<(String, String)> = files
            .iter()
            .map(|f| {
                let name = f.path.rsplit('/').next().unwrap_or_default().to_string();
                (name, f.content.clone())
            })
            .collect();
        let back = match netcfg::parse::read_files(&pairs) {
            Ok(b) => b,
            Err(e) => {
                failures.push(format!("{}: {e}", case.display()));
                continue;
            }
        };
        let mut again: Vec<(String, String)> = netcfg::render::network_files(
            &back,
            netcfg::NETWORKD_DIR,
            "Generated by keel-installer from the answer file.",
        )
        .into_iter()
        .map(|f| (f.path, f.content))
        .collect();
        let mut orig: Vec<(String, String)> =
            files.into_iter().map(|f| (f.path, f.content)).collect();
        again.sort();
        orig.sort();
        if again != orig {
            failures.push(format!(
                "{}: read back and rendered again differs:\n{:#?}\nvs\n{:#?}",
                case.display(),
                orig,
                again
            ));
        }
        if !netcfg::validate::validate(&back).is_empty() {
            failures.push(format!(
                "{}: read-back model has problems: {:?}",
                case.display(),
                netcfg::validate::validate(&back)
            ));
        }
    }
    run_all(failures);
}
