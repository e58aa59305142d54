//! The Kafka side of the runtime: publishing with delivery tracking ([`sink`]), changelog restore
//! ([`restore`]) and topic provisioning ([`topics`]).

pub mod restore;
pub mod sink;
pub mod topics;
