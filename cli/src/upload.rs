//! `keel storage upload`: stream a file as the request body, with a byte progress bar.

use std::io::IsTerminal;
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE};
use reqwest::Method;
use serde_json::Value;
use tokio::io::AsyncReadExt;

use keel_api::storage::{PoolInfo, VolumeInfo};

use crate::client::{typed, Client};
use crate::output;

const CHUNK: usize = 256 * 1024;

fn byte_bar(size: u64, name: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(size);
    pb.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:30.cyan/blue}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    pb.set_message(format!("uploading {name}"));
    pb.enable_steady_tick(Duration::from_millis(200));
    pb
}

/// The volume name for a file: `--name`, else the file's own name.
pub fn volume_name(file: &Path, name: Option<&str>) -> Result<String> {
    match name {
        Some(n) if !n.is_empty() => Ok(n.to_string()),
        _ => file
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_string)
            .ok_or_else(|| {
                anyhow!(
                    "{}: cannot derive a volume name; pass --name",
                    file.display()
                )
            }),
    }
}

/// Check what keel-hostd would refuse before sending any byte: once the body is streaming, a
/// refusal only shows up here as a broken connection.
async fn preflight(c: &Client, node: &str, pool: &str, name: &str, size: u64) -> Result<()> {
    if !keel_api::vm::valid_object_name(name) {
        bail!("{name:?} is not a valid volume name (letters, digits, '-', '_', '.', '+'); pass --name");
    }
    if size == 0 {
        bail!("the file is empty: nothing to upload");
    }
    let pools: Vec<PoolInfo> = typed(c.get(&["nodes", node, "storage"], &[]).await?)?;
    let Some(p) = pools.iter().find(|p| p.name == pool) else {
        let names: Vec<&str> = pools.iter().map(|p| p.name.as_str()).collect();
        bail!(
            "storage pool {pool:?} not found on node {node} (pools: {})",
            names.join(", ")
        );
    };
    if p.kind != "dir" {
        bail!("uploads go to 'dir' pools; pool {pool:?} is {:?}", p.kind);
    }
    if size > p.available {
        bail!(
            "pool {pool:?} has {} free, the file needs {}",
            output::bytes(p.available),
            output::bytes(size)
        );
    }
    let vols: Vec<VolumeInfo> = typed(
        c.get(&["nodes", node, "storage", pool, "content"], &[])
            .await?,
    )?;
    if vols.iter().any(|v| v.name == name) {
        bail!(
            "volume {name:?} already exists in pool {pool:?}; delete it first \
             (keel storage delete-volume {pool} {name}) or pass --name"
        );
    }
    Ok(())
}

/// Send the file; returns the server's answer (`{"upid"}` of the finished upload task).
pub async fn upload(
    c: &Client,
    node: &str,
    pool: &str,
    file: &Path,
    name: Option<&str>,
) -> Result<Value> {
    let name = volume_name(file, name)?;
    let f = tokio::fs::File::open(file)
        .await
        .with_context(|| format!("cannot open {}", file.display()))?;
    let meta = f
        .metadata()
        .await
        .with_context(|| format!("cannot stat {}", file.display()))?;
    if !meta.is_file() {
        bail!("{} is not a regular file", file.display());
    }
    let size = meta.len();
    preflight(c, node, pool, &name, size).await?;
    let pb = byte_bar(size, &name);
    let stream = futures_util::stream::unfold((Some(f), pb.clone()), |(f, pb)| async move {
        let mut f = f?;
        let mut buf = vec![0u8; CHUNK];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                pb.inc(n as u64);
                Some((Ok::<_, std::io::Error>(buf), (Some(f), pb)))
            }
            // Report the error once, then end the stream.
            Err(e) => Some((Err(e), (None, pb))),
        }
    });
    let url = c.url(
        &["nodes", node, "storage", pool, "upload"],
        &[("filename", name.clone()), ("size", size.to_string())],
    );
    let resp = c
        .send(Method::POST, url.clone(), |rb| {
            rb.header(CONTENT_TYPE, "application/octet-stream")
                .header(CONTENT_LENGTH, size)
                .body(reqwest::Body::wrap_stream(stream))
        })
        .await;
    pb.finish_and_clear();
    let resp = resp.map_err(|e| {
        if e.downcast_ref::<crate::client::ApiError>().is_some() {
            return e;
        }
        anyhow!(
            "{e:#}\n  hint: keel-hostd closes the connection when it refuses an upload, so its \
             reason is lost; accepted names end in .iso, .img, .qcow2, .raw or .vmdk"
        )
    })?;
    let text = resp.text().await.context("reading the upload's answer")?;
    serde_json::from_str(&text).map_err(|e| anyhow!("unexpected answer to the upload: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(
            volume_name(Path::new("/tmp/debian-12.iso"), None).expect("name"),
            "debian-12.iso"
        );
        assert_eq!(
            volume_name(Path::new("/tmp/x.iso"), Some("y.iso")).expect("name"),
            "y.iso"
        );
        assert!(volume_name(Path::new("/"), None).is_err());
    }
}
