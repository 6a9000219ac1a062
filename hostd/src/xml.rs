//! The element model lives in the shared `keel-xml` crate (hostd's libvirt XML and clusterd's CIB
//! fragments both use it).
pub use keel_xml::*;
