//! Keel's test labs, shared by every end-to-end scenario.
//!
//! - [`netns`]: N nodes as network + mount namespaces on the host (seconds to start), each able
//!   to run corosync, Pacemaker, a private libvirtd and Keel's daemons, with a lab fence agent.
//! - [`vmlab`]: N QEMU TCG guests booted from Keel's node image, on private socket links, with
//!   QMP fault injection and a fence agent that acts through QMP.
//! - [`keelnode`]: Keel's own daemons on a netns node (keel-hostd started there, the `keel` CLI
//!   against it, the built binaries).
//! - [`qnetd`]: a corosync-qnetd on the host for the VM lab (a two-guest cluster's third vote).
//! - [`installlab`]: Keel's installer ISO booted under TCG on blank disks (BIOS or UEFI), on a
//!   lab link (a namespace bridge with the host's chronyd) the tests SSH over.
//!
//! Labs only ever stop processes they started, by PID, and keep their run directory on failure.

pub mod bmc;
pub mod installlab;
pub mod keelnode;
pub mod netns;
pub mod qnetd;
pub mod vmlab;
