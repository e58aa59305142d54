//! Account scoring, the pure part: an account's members and the aggregates and thresholds over them.
//!
//! An account keeps each member contact as the contact last reported itself: its phase and its groups
//! as of their last change (a step group with its live contributions, so that they expire on time).
//! Every aggregate is computed from those members at the time asked for, decaying each group by its own
//! law, so it is exact however contacts' scores change, decay, move between accounts, are erased or
//! merged: a member's new report replaces the old one, and a contact that leaves is dropped. Nothing is
//! summed incrementally, so nothing drifts.
//!
//! Account thresholds fire up when an update makes all their conditions hold, and fall when a condition
//! no longer holds with its levels lowered by the hysteresis: on an update, or when decay takes the
//! account there (its timer, at the first millisecond it happens).

mod book;
pub mod codec;
mod output;
#[cfg(test)]
mod tests;

pub use book::AccountBook;
pub use output::{AccountBody, AccountOutput, AccountScoreChanged, AccountThresholdCrossed, Aggregate, MemberMove};

use crate::rules::{AccountRules, AccountThreshold, Grade, Rules, Target};
use crate::scoring::{BOUND_MARGIN, ContactState, Decaying, Direction, GroupScore, first_failure};

/// A contact as its account sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    /// The contact id.
    pub contact: String,
    /// Index of its phase in [`Rules::phases`].
    pub phase: usize,
    /// Its groups as of their last change; contributions kept only where the value needs them.
    pub groups: Vec<GroupScore>,
}

impl Member {
    /// The member a contact's state makes.
    pub fn of(rules: &Rules, state: &ContactState) -> Member {
        // An empty group is the same at any time: it is kept as of time 0, as its stored form reads
        // back, so that a member compares equal to itself read back.
        let groups = state
            .value_groups(rules)
            .into_iter()
            .map(|score| if score.is_empty() { GroupScore::empty(0) } else { score })
            .collect();
        Member { contact: state.contact.clone(), phase: state.phase, groups }
    }

    /// Its weighted score at `at_ms`: the account's score target, times its phase's weight.
    pub fn score(&self, rules: &Rules, accounts: &AccountRules, at_ms: i64) -> f64 {
        let value = |index: usize| match (rules.groups.get(index), self.groups.get(index)) {
            (Some(group), Some(score)) => score.value_at(group, at_ms),
            _ => 0.0,
        };
        let raw = match accounts.score {
            Target::Group(index) => value(index),
            Target::Total => (0..rules.groups.len()).map(|index| rules.groups[index].weight * value(index)).sum(),
        };
        raw * accounts.phase_weights.get(self.phase).copied().unwrap_or(1.0)
    }

    /// Its fit grade at `at_ms`, if the rules grade.
    pub fn grade(&self, rules: &Rules, at_ms: i64) -> Option<Grade> {
        let grades = rules.grades?;
        let group = rules.groups.get(grades.group)?;
        Some(grades.grade(self.groups.get(grades.group).map_or(0.0, |score| score.value_at(group, at_ms))))
    }
}

/// One account.
#[derive(Debug, Clone, PartialEq)]
pub struct AccountState {
    /// The account id.
    pub account: String,
    /// The latest time of an update it has seen, epoch ms.
    pub clock_ms: i64,
    /// Its contacts, ordered by id.
    pub members: Vec<Member>,
    /// Per account threshold of the rules, whether it fired up and has not fallen back.
    pub fired: Vec<bool>,
    /// The earliest decay-driven fall of a fired threshold: the account's timer.
    pub next_timer_ms: Option<i64>,
}

/// What a contact's change does to its account.
#[derive(Debug, Clone, PartialEq)]
pub enum MemberChange {
    /// The contact joined the account or changed: its new view.
    Upsert(Member),
    /// The contact left the account (it moved to another, was erased, expired or merged into another).
    Leave(String),
}

impl MemberChange {
    /// The contact that changed.
    pub fn contact(&self) -> &str {
        match self {
            MemberChange::Upsert(Member { contact, .. }) | MemberChange::Leave(contact) => contact,
        }
    }

    /// Whether the change leaves the account as it is, its clock included: a member reporting itself as
    /// it was (after a change its account does not see, such as its history or a threshold of its own),
    /// or a contact that is not a member leaving.
    fn changes_nothing(&self, account: Option<&AccountState>) -> bool {
        let members = account.map_or(&[][..], |account| &account.members[..]);
        let known = |contact: &str| members.binary_search_by(|known| known.contact.as_str().cmp(contact));
        match self {
            MemberChange::Upsert(member) => known(&member.contact).is_ok_and(|index| members[index] == *member),
            MemberChange::Leave(contact) => known(contact).is_err(),
        }
    }
}

/// The result of [`apply`] or [`on_timer`].
#[derive(Debug, Clone, PartialEq)]
pub struct AccountApplied {
    /// The account after; `None` once its last contact left.
    pub state: Option<AccountState>,
    /// Outputs, in order.
    pub outputs: Vec<AccountOutput>,
}

/// The members' weighted scores (best first) and grades at one time.
struct Standing {
    scores: Vec<f64>,
    grades: Vec<Option<Grade>>,
}

impl Standing {
    fn at(rules: &Rules, accounts: &AccountRules, members: &[Member], at_ms: i64) -> Standing {
        let mut scores: Vec<f64> = members.iter().map(|member| member.score(rules, accounts, at_ms)).collect();
        scores.sort_unstable_by(|a, b| b.total_cmp(a));
        let grades = members.iter().map(|member| member.grade(rules, at_ms)).collect();
        Standing { scores, grades }
    }

    fn aggregate(&self, top_k: usize) -> Aggregate {
        Aggregate {
            contacts: self.scores.len(),
            sum: self.scores.iter().sum(),
            max: self.scores.first().copied().unwrap_or(0.0),
            top_k_sum: self.scores.iter().take(top_k).sum(),
        }
    }

    /// Whether every condition of `threshold` holds; `falling`: with its levels lowered by the hysteresis,
    /// as a fired threshold is checked.
    fn holds(&self, threshold: &AccountThreshold, top_k: usize, falling: bool) -> bool {
        let slack = if falling { threshold.hysteresis } else { 0.0 };
        let aggregate = self.aggregate(top_k);
        let at_least = |value: f64, level: Option<f64>| level.is_none_or(|level| value >= level - slack);
        at_least(aggregate.sum, threshold.sum)
            && at_least(aggregate.max, threshold.max)
            && at_least(aggregate.top_k_sum, threshold.top_k_sum)
            && threshold.contacts_above.is_none_or(|(level, count)| {
                self.scores.iter().filter(|score| **score >= level - slack).count() >= count
            })
            && threshold.graded.is_none_or(|(grade, count)| {
                self.grades.iter().filter(|graded| graded.is_some_and(|graded| graded <= grade)).count() >= count
            })
    }
}

impl AccountState {
    /// An account without members as of `clock_ms`.
    pub fn new(rules: &Rules, account: &str, clock_ms: i64) -> AccountState {
        let thresholds = rules.accounts.as_ref().map_or(0, |accounts| accounts.thresholds.len());
        AccountState {
            account: account.to_owned(),
            clock_ms,
            members: Vec::new(),
            fired: vec![false; thresholds],
            next_timer_ms: None,
        }
    }

    /// The aggregates at `at_ms`.
    pub fn aggregate(&self, rules: &Rules, at_ms: i64) -> Aggregate {
        match &rules.accounts {
            Some(accounts) => Standing::at(rules, accounts, &self.members, at_ms).aggregate(accounts.top_k),
            None => Aggregate::default(),
        }
    }

    /// The first millisecond after the clock at which a fired threshold no longer holds, if decay gets
    /// there.
    fn next_fall(&self, rules: &Rules, accounts: &AccountRules) -> Option<i64> {
        accounts
            .thresholds
            .iter()
            .zip(&self.fired)
            .filter(|(_, fired)| **fired)
            .filter_map(|(threshold, _)| self.fall_time(rules, accounts, threshold))
            .min()
    }

    /// The first millisecond after the clock at which `threshold` no longer holds: searched over each
    /// member's weighted score (and, for a grade condition, its grade group's value).
    fn fall_time(&self, rules: &Rules, accounts: &AccountRules, threshold: &AccountThreshold) -> Option<i64> {
        let mut scores: Vec<Decaying> = self
            .members
            .iter()
            .map(|member| {
                let weight = accounts.phase_weights.get(member.phase).copied().unwrap_or(1.0);
                Decaying::of(rules, &member.groups, accounts.score, weight)
            })
            .collect();
        let graded = rules.grades.filter(|_| threshold.graded.is_some());
        if let Some(grades) = graded {
            let grade_values =
                self.members.iter().map(|member| Decaying::of(rules, &member.groups, Target::Group(grades.group), 1.0));
            scores.extend(grade_values);
        }
        let members = self.members.len();
        let holds_over = |floors: &[f64]| {
            let lowered = |value: f64| value - value.abs().max(1.0) * BOUND_MARGIN;
            let mut scores: Vec<f64> = floors[..members].iter().map(|floor| lowered(*floor)).collect();
            scores.sort_unstable_by(|a, b| b.total_cmp(a));
            let grades = match graded {
                Some(grades) => floors[members..].iter().map(|floor| Some(grades.grade(lowered(*floor)))).collect(),
                None => self.members.iter().map(|member| member.grade(rules, self.clock_ms)).collect(),
            };
            Standing { scores, grades }.holds(threshold, accounts.top_k, true)
        };
        first_failure(
            self.clock_ms,
            &scores,
            |at| Standing::at(rules, accounts, &self.members, at).holds(threshold, accounts.top_k, true),
            holds_over,
            |_| None,
        )
    }

    /// Fires, in time order, the falls due by `now_ms`, each at its first millisecond.
    fn fire_falls(&mut self, rules: &Rules, accounts: &AccountRules, now_ms: i64, outputs: &mut Vec<AccountOutput>) {
        if self.next_timer_ms.is_none_or(|due| due > now_ms) {
            return;
        }
        let mut due: Vec<(i64, usize)> = accounts
            .thresholds
            .iter()
            .enumerate()
            .filter(|(index, _)| self.fired[*index])
            .filter_map(|(index, threshold)| {
                self.fall_time(rules, accounts, threshold).filter(|at| *at <= now_ms).map(|at| (at, index))
            })
            .collect();
        due.sort_unstable();
        for (at_ms, index) in due {
            self.fired[index] = false;
            self.clock_ms = self.clock_ms.max(at_ms);
            let aggregate = self.aggregate(rules, at_ms);
            let threshold = &accounts.thresholds[index];
            let id = format!("{}:{}:down:{at_ms}", self.account, threshold.name);
            outputs.push(output::crossed(rules, &self.account, id, threshold, Direction::Down, aggregate, at_ms));
        }
        self.next_timer_ms = None;
    }
}

/// Applies a contact's change to its account (`None` for an account not seen before) at `at_ms`; `id`
/// names the change (the contact output or event that caused it) and makes the outputs' ids.
pub fn apply(
    rules: &Rules,
    state: Option<AccountState>,
    account: &str,
    change: MemberChange,
    at_ms: i64,
    id: &str,
) -> AccountApplied {
    let Some(accounts) = &rules.accounts else {
        return AccountApplied { state, outputs: Vec::new() };
    };
    if change.changes_nothing(state.as_ref()) {
        return AccountApplied { state, outputs: Vec::new() };
    }
    let mut outputs = Vec::new();
    let at_ms = state.as_ref().map_or(at_ms, |state| state.clock_ms.max(at_ms));
    let mut state = state.unwrap_or_else(|| AccountState::new(rules, account, at_ms));
    state.fire_falls(rules, accounts, at_ms, &mut outputs);
    state.clock_ms = at_ms;
    let old = state.aggregate(rules, at_ms);
    let (contact, moved) = match change {
        MemberChange::Upsert(member) => {
            let contact = member.contact.clone();
            match state.members.binary_search_by(|known| known.contact.cmp(&contact)) {
                Ok(index) => {
                    state.members[index] = member;
                    (contact, MemberMove::Updated)
                }
                Err(index) => {
                    state.members.insert(index, member);
                    (contact, MemberMove::Joined)
                }
            }
        }
        MemberChange::Leave(contact) => {
            if let Ok(index) = state.members.binary_search_by(|known| known.contact.cmp(&contact)) {
                state.members.remove(index);
            }
            (contact, MemberMove::Left)
        }
    };
    let standing = Standing::at(rules, accounts, &state.members, at_ms);
    let new = standing.aggregate(accounts.top_k);
    let mut sequence = 0;
    let mut next_id = || {
        sequence += 1;
        format!("{id}:{account}:{}", sequence - 1)
    };
    if new != old || moved != MemberMove::Updated {
        let body = AccountScoreChanged { contact, change: moved, old_sum: old.sum, aggregate: new };
        outputs.push(output::score_changed(rules, account, next_id(), body, at_ms));
    }
    for (index, threshold) in accounts.thresholds.iter().enumerate() {
        let direction = if state.fired[index] {
            (!standing.holds(threshold, accounts.top_k, true)).then_some(Direction::Down)
        } else {
            standing.holds(threshold, accounts.top_k, false).then_some(Direction::Up)
        };
        if let Some(direction) = direction {
            state.fired[index] = direction == Direction::Up;
            outputs.push(output::crossed(rules, account, next_id(), threshold, direction, new, at_ms));
        }
    }
    finish(rules, accounts, state, outputs)
}

/// Fires the decay-driven threshold falls of an account due at `now_ms`.
pub fn on_timer(rules: &Rules, state: AccountState, now_ms: i64) -> AccountApplied {
    let Some(accounts) = &rules.accounts else {
        return AccountApplied { state: Some(state), outputs: Vec::new() };
    };
    let mut state = state;
    let mut outputs = Vec::new();
    state.fire_falls(rules, accounts, now_ms, &mut outputs);
    finish(rules, accounts, state, outputs)
}

/// Sets the account's timer; an account without contacts is gone.
fn finish(
    rules: &Rules,
    accounts: &AccountRules,
    mut state: AccountState,
    outputs: Vec<AccountOutput>,
) -> AccountApplied {
    if state.members.is_empty() {
        return AccountApplied { state: None, outputs };
    }
    state.next_timer_ms = state.next_fall(rules, accounts);
    AccountApplied { state: Some(state), outputs }
}
