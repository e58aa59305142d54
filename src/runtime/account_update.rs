//! Records of the internal account topic (`leadscore.v1.AccountUpdate`): a contact's change, sent by the
//! contact's task to the task that owns its account, keyed by the account.
//!
//! A contact reports itself to its account after every change of its state: an `Upsert` with its phase and
//! groups while it names the account, a `Leave` once it names another, is erased, expires or is merged
//! away. Each update names its origin (the record whose processing wrote it) and its place among that
//! record's updates. A task that scores uncommitted input again after a crash or a rebalance sends the
//! same updates again, in the same order; the account applies each origin partition's updates once, in
//! order, and keeps the last one applied per origin partition in its record.

use prost::Message;

use super::internal::Origin;
use crate::accounts::MemberChange;
use crate::accounts::codec::{member_from_proto, member_to_proto};
use crate::proto::v1;
use crate::rules::Rules;

/// One update.
#[derive(Debug, Clone, PartialEq)]
pub struct AccountUpdate {
    /// Where it came from.
    pub origin: Origin,
    /// Its place among the updates its origin wrote.
    pub index: u32,
    /// The change's id.
    pub id: String,
    /// When the change happened, epoch ms.
    pub at_ms: i64,
    /// What changed.
    pub change: MemberChange,
}

impl AccountUpdate {
    /// Encodes the update.
    pub fn encode(&self, rules: &Rules) -> Vec<u8> {
        let change = match &self.change {
            MemberChange::Upsert(member) => v1::account_update::Change::Upsert(member_to_proto(rules, member)),
            MemberChange::Leave(contact) => v1::account_update::Change::Leave(contact.clone()),
        };
        v1::AccountUpdate {
            origin_topic: self.origin.topic,
            origin_partition: self.origin.partition,
            origin_offset: self.origin.offset,
            origin_index: self.index,
            id: self.id.clone(),
            at_ms: self.at_ms,
            change: Some(change),
        }
        .encode_to_vec()
    }

    /// Decodes an update written by [`AccountUpdate::encode`]; the error says what is wrong with it.
    pub fn decode(rules: &Rules, bytes: &[u8]) -> Result<AccountUpdate, String> {
        let message = v1::AccountUpdate::decode(bytes).map_err(|err| format!("account update: {err}"))?;
        let change = match message.change {
            Some(v1::account_update::Change::Upsert(member)) => MemberChange::Upsert(
                member_from_proto(rules, &member)
                    .map_err(|err| format!("account update of {:?}: {err}", member.contact))?,
            ),
            Some(v1::account_update::Change::Leave(contact)) => MemberChange::Leave(contact),
            None => return Err("account update without a change".to_owned()),
        };
        let origin =
            Origin { topic: message.origin_topic, partition: message.origin_partition, offset: message.origin_offset };
        Ok(AccountUpdate { origin, index: message.origin_index, id: message.id, at_ms: message.at_ms, change })
    }
}
