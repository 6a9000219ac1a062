//! Certificate pinning lives in the shared `keel-pin` crate (the installer and hostd's cluster
//! joins use the same verifier and fingerprint format).
pub use keel_pin::*;
