//! Builds the outputs of one event or timer, with deterministic ids, and mutes them for disqualified
//! contacts.

use super::attribution::{Attribution, Conversion, RuleFire};
use super::output::{
    ContactErased, ContactMerged, Direction, GroupValue, Output, OutputBody, PhaseChanged, ScoreChanged,
    ThresholdCrossed,
};
use super::state::{ContactState, weighted_total};
use crate::rules::{Rules, Threshold};

pub(super) struct Emitter<'a> {
    rules: &'a Rules,
    contact: &'a str,
    event_id: &'a str,
    outputs: Vec<Output>,
    /// Per output: published even while the contact is disqualified (the change of qualification itself).
    unmuted: Vec<bool>,
    sequence: u32,
    attribution: Attribution,
}

impl<'a> Emitter<'a> {
    pub fn new(rules: &'a Rules, contact: &'a str, event_id: &'a str) -> Self {
        Emitter {
            rules,
            contact,
            event_id,
            outputs: Vec::new(),
            unmuted: Vec::new(),
            sequence: 0,
            attribution: Attribution::default(),
        }
    }

    /// Counts a rule firing (never muted: statistics count what the engine did).
    pub fn rule_fired(&mut self, fire: RuleFire) {
        self.attribution.fired.push(fire);
    }

    /// Records a phase entry with the explanation just before it.
    pub fn converted(&mut self, conversion: Conversion) {
        self.attribution.conversions.push(conversion);
    }

    /// The rule firings and phase entries gathered so far.
    pub fn take_attribution(&mut self) -> Attribution {
        std::mem::take(&mut self.attribution)
    }

    pub fn event_id(&self) -> &str {
        self.event_id
    }

    fn push(&mut self, id: String, ts_ms: i64, body: OutputBody, unmuted: bool) {
        self.outputs.push(Output {
            id,
            contact: self.contact.to_owned(),
            rules_version: self.rules.version.clone(),
            ts_ms,
            body,
        });
        self.unmuted.push(unmuted);
    }

    fn next_id(&mut self) -> String {
        let mut id = String::with_capacity(self.event_id.len() + 4);
        id.push_str(self.event_id);
        id.push(':');
        id.push_str(itoa::Buffer::new().format(self.sequence));
        self.sequence += 1;
        id
    }

    pub fn score_changed(
        &mut self,
        state: &ContactState,
        at_ms: i64,
        old_total: f64,
        rules_fired: Vec<String>,
        cause: String,
        qualification_changed: bool,
    ) {
        let rules = self.rules;
        let groups = group_values(rules, state, at_ms);
        let new_total = weighted_total(rules, groups.iter().map(|group| group.value));
        let grade = rules.grades.map(|grades| grades.grade(groups.get(grades.group).map_or(0.0, |group| group.value)));
        let body = OutputBody::ScoreChanged(ScoreChanged {
            old_total,
            new_total,
            delta: new_total - old_total,
            groups,
            rules_fired,
            phase: rules.phases[state.phase].name.clone(),
            grade: grade.map(|grade| grade.letter()),
            cause,
            disqualified: state.disqualified.clone(),
        });
        let id = self.next_id();
        self.push(id, at_ms, body, qualification_changed);
    }

    pub fn phase_changed(&mut self, at_ms: i64, from: usize, to: usize, cause: String) {
        let phases = &self.rules.phases;
        let body = OutputBody::PhaseChanged(PhaseChanged {
            from: phases[from].name.clone(),
            to: phases[to].name.clone(),
            cause,
        });
        let id = self.next_id();
        self.push(id, at_ms, body, false);
    }

    /// A merge; published even while the contact is disqualified, since it changes who the contact is.
    pub fn contact_merged(&mut self, at_ms: i64, merge: ContactMerged) {
        let id = self.next_id();
        self.push(id, at_ms, OutputBody::ContactMerged(Box::new(merge)), true);
    }

    /// A crossing; `timer` is t* when decay caused it, which also names the output.
    pub fn threshold(
        &mut self,
        state: &ContactState,
        threshold: &Threshold,
        direction: Direction,
        value: f64,
        at_ms: i64,
        timer: Option<i64>,
    ) {
        let body = OutputBody::ThresholdCrossed(ThresholdCrossed {
            threshold: threshold.name.clone(),
            direction,
            value,
            crossed_at: at_ms,
            phase: self.rules.phases[state.phase].name.clone(),
        });
        let id = match timer {
            Some(t_star) => format!("{}:{}:down:{t_star}", self.contact, threshold.name),
            None => self.next_id(),
        };
        self.push(id, at_ms, body, false);
    }

    /// The outputs to publish: none but changes of qualification while the contact is disqualified.
    pub fn finish(&mut self, state: &ContactState) -> Vec<Output> {
        let outputs = std::mem::take(&mut self.outputs);
        let unmuted = std::mem::take(&mut self.unmuted);
        if state.disqualified.is_none() {
            return outputs;
        }
        outputs.into_iter().zip(unmuted).filter(|(_, unmuted)| *unmuted).map(|(output, _)| output).collect()
    }
}

/// Every group's value at `at_ms`, in rules-file order.
pub(super) fn group_values(rules: &Rules, state: &ContactState, at_ms: i64) -> Vec<GroupValue> {
    rules
        .groups
        .iter()
        .enumerate()
        .map(|(index, group)| GroupValue { group: group.name.clone(), value: state.group_value(rules, index, at_ms) })
        .collect()
}

/// The output that announces an erasure, for `cause`, with the ids of the contacts merged into it.
pub(super) fn erased(
    rules: &Rules,
    contact: &str,
    id: String,
    at_ms: i64,
    cause: &'static str,
    aliases: Vec<String>,
) -> Output {
    Output {
        id,
        contact: contact.to_owned(),
        rules_version: rules.version.clone(),
        ts_ms: at_ms,
        body: OutputBody::ContactErased(ContactErased { cause, aliases }),
    }
}
