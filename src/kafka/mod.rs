//! The Kafka side of the runtime: publishing with delivery tracking ([`sink`]), changelog restore
//! ([`restore`]) and topic provisioning ([`topics`]).

use rdkafka::ClientContext;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

pub mod restore;
pub mod sink;
pub mod topics;

/// Context of the consumers that read to the end of a partition (restore, replay): they ask for
/// end-of-partition events, which librdkafka also reports as client errors; those stay out of the error log.
pub struct EndIsNotAnError;

impl ClientContext for EndIsNotAnError {
    fn error(&self, error: KafkaError, reason: &str) {
        if !matches!(error, KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF)) {
            tracing::error!(error = %error, reason, "Kafka client error");
        }
    }
}

impl ConsumerContext for EndIsNotAnError {}
