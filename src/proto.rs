//! Generated protobuf types for `proto/leadscore/v1`: events, outputs, the stored contact and account
//! states, and the internal topics' records.

/// `leadscore.v1`: the wire format shared with producers, consumers and the changelog.
#[allow(missing_docs, clippy::all)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/leadscore.v1.rs"));
}
