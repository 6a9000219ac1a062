//! Pools and volumes: list, create, delete (refused while a VM uses the volume), and
//! streamed, size-checked uploads of ISO and disk images into `dir` pools.

use std::io::Write;
use std::path::PathBuf;

use keel_api::storage::VolumeCreate;
use keel_api::vm::valid_object_name;

use crate::error::{Error, Result};
use crate::tasks::TaskHandle;
use crate::Node;

pub fn check_volume_create(node: &Node, pool: &str, req: &VolumeCreate) -> Result<()> {
    if !valid_object_name(&req.name) {
        return Err(Error::validation(
            "name",
            format!(
                "{:?} is not a valid volume name (letters, digits, '-', '_', '.', '+')",
                req.name
            ),
        ));
    }
    if req.size_mib == 0 || req.size_mib > 64 * 1024 * 1024 {
        return Err(Error::validation(
            "size_mib",
            format!(
                "size_mib {} is out of range: use 1 to 67108864 MiB",
                req.size_mib
            ),
        ));
    }
    let info = node.hv.pool(pool)?;
    if (info.kind == crate::hv::thin::KIND || info.kind == crate::hv::shared_lvm::KIND)
        && req.format != keel_api::vm::DiskFormat::Raw
    {
        return Err(Error::validation(
            "format",
            format!(
                "pool {pool:?} is {}: its volumes are LVs, raw block devices; give format raw",
                info.kind
            ),
        ));
    }
    if node.hv.volume(pool, &req.name).is_ok() {
        return Err(Error::Conflict(format!(
            "volume {:?} already exists in pool {pool:?}",
            req.name
        )));
    }
    Ok(())
}

pub fn create_volume(node: &Node, pool: &str, req: &VolumeCreate, task: &TaskHandle) -> Result<()> {
    let path = node
        .hv
        .create_volume(pool, &req.name, req.size_mib * 1024 * 1024, req.format)?;
    task.log(format!(
        "created {path} ({} MiB, {})",
        req.size_mib,
        req.format.as_str()
    ));
    Ok(())
}

pub fn check_volume_delete(node: &Node, pool: &str, volume: &str) -> Result<()> {
    if volume.starts_with('.') {
        return Err(Error::validation(
            "volume",
            format!(
                "{volume:?} is not a volume: files whose name starts with '.' are Keel's own (a shared pool's marker, an upload in progress)"
            ),
        ));
    }
    node.hv.volume(pool, volume)?;
    let users = crate::vms::volume_users(node, pool, volume)?;
    if !users.is_empty() {
        return Err(Error::Conflict(format!(
            "volume {pool}/{volume} is used by {}; detach it or delete the VM first",
            users.join(", ")
        )));
    }
    Ok(())
}

pub fn delete_volume(node: &Node, pool: &str, volume: &str, task: &TaskHandle) -> Result<()> {
    node.hv.delete_volume(pool, volume)?;
    task.log(format!("deleted {pool}/{volume}"));
    Ok(())
}

/// Allowed upload names: ISO images and disk images …
const UPLOAD_EXT: [&str; 5] = [".iso", ".img", ".qcow2", ".raw", ".vmdk"];
/// … and kernels and initramfs images for direct kernel boot (`VmSpec.kernel`).
const UPLOAD_PREFIX: [&str; 3] = ["vmlinuz", "initrd", "initramfs"];

/// Check an upload before any byte is read; returns the pool's directory.
pub fn check_upload(
    node: &Node,
    pool: &str,
    filename: &str,
    size: u64,
    content_length: Option<u64>,
) -> Result<PathBuf> {
    if !valid_object_name(filename)
        || !(UPLOAD_EXT
            .iter()
            .any(|e| filename.to_ascii_lowercase().ends_with(e))
            || UPLOAD_PREFIX.iter().any(|e| filename.starts_with(e)))
    {
        return Err(Error::validation(
            "filename",
            format!("{filename:?} is not an accepted image name: letters, digits, '-', '_', '.', ending in {} (images) or starting with {} (direct kernel boot)", UPLOAD_EXT.join(", "), UPLOAD_PREFIX.join(", ")),
        ));
    }
    if size == 0 {
        return Err(Error::validation(
            "size",
            "size must be the exact byte count of the file (> 0)",
        ));
    }
    if let Some(cl) = content_length {
        if cl != size {
            return Err(Error::validation(
                "size",
                format!("size {size} differs from the request's Content-Length {cl}"),
            ));
        }
    }
    let info = node.hv.pool(pool)?;
    if info.kind != "dir" {
        return Err(Error::BadRequest(format!(
            "uploads go to 'dir' pools; pool {pool:?} is {:?}",
            info.kind
        )));
    }
    if size > info.available {
        return Err(Error::validation(
            "size",
            format!(
                "pool {pool:?} has {} bytes free, the upload needs {size}",
                info.available
            ),
        ));
    }
    if node.hv.volume(pool, filename).is_ok() {
        return Err(Error::Conflict(format!(
            "volume {filename:?} already exists in pool {pool:?}; delete it first"
        )));
    }
    let dir = info
        .path
        .ok_or_else(|| Error::Internal(format!("pool {pool:?} has no target path")))?;
    Ok(PathBuf::from(dir))
}

/// Writes an upload to a hidden temporary file; `commit` renames it into the pool, dropping
/// it without commit removes the partial file.
pub struct UploadSink {
    tmp: PathBuf,
    dest: PathBuf,
    file: Option<std::fs::File>,
    pub written: u64,
    pub expected: u64,
}

impl UploadSink {
    pub fn new(dir: &std::path::Path, filename: &str, expected: u64) -> Result<Self> {
        let tmp = dir.join(format!(".{filename}.upload"));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    Error::Conflict(format!("an upload of {filename:?} is already in progress"))
                } else {
                    Error::Io(e)
                }
            })?;
        Ok(UploadSink {
            tmp,
            dest: dir.join(filename),
            file: Some(file),
            written: 0,
            expected,
        })
    }

    pub fn write(&mut self, chunk: &[u8]) -> Result<()> {
        if self.written + chunk.len() as u64 > self.expected {
            return Err(Error::validation(
                "size",
                format!(
                    "the upload is larger than the declared size {}",
                    self.expected
                ),
            ));
        }
        if let Some(f) = self.file.as_mut() {
            f.write_all(chunk)?;
        }
        self.written += chunk.len() as u64;
        Ok(())
    }

    pub fn commit(mut self) -> Result<()> {
        if self.written != self.expected {
            return Err(Error::validation(
                "size",
                format!(
                    "the upload ended after {} of {} bytes; nothing was kept",
                    self.written, self.expected
                ),
            ));
        }
        if let Some(f) = self.file.take() {
            f.sync_all()?;
        }
        if self.dest.exists() {
            return Err(Error::Conflict(format!(
                "{} appeared during the upload; nothing was overwritten",
                self.dest.display()
            )));
        }
        std::fs::rename(&self.tmp, &self.dest)?;
        Ok(())
    }
}

impl Drop for UploadSink {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.tmp);
    }
}
