//! Accounts in memory, kept in step with their contacts: the offline model's accounts, and the order in
//! which contacts' changes reach them.

use std::collections::{BTreeMap, BTreeSet};

use super::{AccountOutput, AccountState, Member, MemberChange, apply, on_timer};
use crate::rules::Rules;
use crate::scoring::ContactState;

/// Every account, which account each contact is a member of, and the accounts' timers.
#[derive(Debug, Default, Clone)]
pub struct AccountBook {
    accounts: BTreeMap<String, AccountState>,
    member_of: BTreeMap<String, String>,
    timers: BTreeSet<(i64, String)>,
}

impl AccountBook {
    /// Every account, by id.
    pub fn accounts(&self) -> &BTreeMap<String, AccountState> {
        &self.accounts
    }

    /// Brings a contact's account up to date with its state (`None`: erased, expired or merged away), as
    /// of `at_ms`; `id` names the change. A contact whose account changed leaves the old one first.
    pub fn sync(
        &mut self,
        rules: &Rules,
        contact: &str,
        state: Option<&ContactState>,
        at_ms: i64,
        id: &str,
    ) -> Vec<AccountOutput> {
        if rules.accounts.is_none() {
            return Vec::new();
        }
        let mut outputs = Vec::new();
        let named = state.and_then(|state| state.account.clone());
        let id = [id, ":", contact].concat();
        if let Some(old) = self.member_of.get(contact).cloned().filter(|old| Some(old) != named.as_ref()) {
            self.member_of.remove(contact);
            outputs.extend(self.change(rules, &old, MemberChange::Leave(contact.to_owned()), at_ms, &id));
        }
        if let (Some(state), Some(account)) = (state, named) {
            self.member_of.insert(contact.to_owned(), account.clone());
            let at_ms = at_ms.max(state.clock_ms);
            outputs.extend(self.change(rules, &account, MemberChange::Upsert(Member::of(rules, state)), at_ms, &id));
        }
        outputs
    }

    /// Fires the account timers due at `now_ms`, in time order.
    pub fn fire_due(&mut self, rules: &Rules, now_ms: i64) -> Vec<AccountOutput> {
        let mut outputs = Vec::new();
        while self.timers.first().is_some_and(|(due, _)| *due <= now_ms) {
            let Some((due, account)) = self.timers.pop_first() else { break };
            let Some(state) = self.accounts.remove(&account) else { continue };
            if state.next_timer_ms != Some(due) {
                self.keep(state);
                continue;
            }
            let applied = on_timer(rules, state, now_ms);
            outputs.extend(applied.outputs);
            if let Some(state) = applied.state {
                self.keep(state);
            }
        }
        outputs
    }

    fn change(
        &mut self,
        rules: &Rules,
        account: &str,
        change: MemberChange,
        at_ms: i64,
        id: &str,
    ) -> Vec<AccountOutput> {
        let before = self.accounts.remove(account);
        if let Some(due) = before.as_ref().and_then(|state| state.next_timer_ms) {
            self.timers.remove(&(due, account.to_owned()));
        }
        let applied = apply(rules, before, account, change, at_ms, id);
        if let Some(state) = applied.state {
            self.keep(state);
        }
        applied.outputs
    }

    fn keep(&mut self, state: AccountState) {
        if let Some(due) = state.next_timer_ms {
            self.timers.insert((due, state.account.clone()));
        }
        self.accounts.insert(state.account.clone(), state);
    }
}
