//! The Kafka side of the runtime: publishing with delivery tracking ([`sink`]), changelog restore
//! ([`restore`]) and topic provisioning ([`topics`]).

use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::ToBytes;
use rdkafka::producer::{BaseRecord, ProducerContext, ThreadedProducer};

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

/// Sends `record`, waiting while the producer's local queue is full (its poll thread drains it as
/// acknowledgements arrive). For producers of generated load; the processor's sink takes its
/// acknowledgements in while it waits.
pub fn send_when_queued<C, K, P>(
    producer: &ThreadedProducer<C>,
    mut record: BaseRecord<'_, K, P, C::DeliveryOpaque>,
) -> Result<(), KafkaError>
where
    C: ProducerContext,
    K: ToBytes + ?Sized,
    P: ToBytes + ?Sized,
{
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err((err, _)) => return Err(err),
        }
    }
}
