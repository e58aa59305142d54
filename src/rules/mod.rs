//! The rules file: score groups with their decay laws, rules, thresholds, phases and fit grades.
//!
//! [`file`] is the TOML shape as users write it; [`compile`] validates it, with the file, line and column
//! of every error, and turns it into [`Rules`]: indices instead of names, rules grouped by event type, and
//! globs compiled, so that scoring an event allocates nothing to find its rules.

mod accounts;
mod compile;
mod duration;
mod file;
mod glob;

use std::path::Path;

pub use accounts::{AccountRules, AccountThreshold};
pub use compile::RulesError;
#[cfg(feature = "runtime")]
pub(crate) use compile::line_column;
pub use duration::parse_duration_ms;
pub use glob::Glob;

use crate::event::{AttrValue, Event};

/// A validated, compiled scorecard.
#[derive(Debug, Clone)]
pub struct Rules {
    /// Optional name from the file, part of the version.
    pub name: Option<String>,
    /// `name@hash` (or just the hash): stamped on every output.
    pub version: String,
    /// Score groups in file order.
    pub groups: Vec<Group>,
    /// Rules in file order.
    pub rules: Vec<Rule>,
    /// Thresholds in file order; evaluated in this order.
    pub thresholds: Vec<Threshold>,
    /// Phases in lifecycle order; a new contact starts in the first.
    pub phases: Vec<Phase>,
    /// Fit grades, if the file declares them.
    pub grades: Option<Grades>,
    /// The group credited by a manual adjustment that names none.
    pub manual_group: usize,
    /// How many history entries a contact keeps.
    pub history_limit: usize,
    /// How many recent event ids a contact remembers to drop duplicates.
    pub dedup_window: usize,
    /// Event types that merge another contact into the event's, with the attribute that names it; the
    /// built-in `merge` type (attribute `merged`) first.
    pub merges: Vec<MergeOn>,
    /// How anonymous visitors are told apart, and when an idle one is removed, if the file says.
    pub anonymous: Option<Anonymous>,
    /// Account scoring, if the file declares `[accounts]`.
    pub accounts: Option<AccountRules>,
    rules_by_type: foldhash::HashMap<String, Box<[usize]>>,
}

impl Rules {
    /// Reads and compiles a rules file; errors carry the file, line and column.
    pub fn load(path: &Path) -> Result<Rules, RulesError> {
        let source = std::fs::read_to_string(path).map_err(|err| RulesError::io(path, &err))?;
        Rules::parse(&source, path)
    }

    /// Compiles rules from TOML text; `path` is only used in error messages.
    pub fn parse(source: &str, path: &Path) -> Result<Rules, RulesError> {
        compile::compile(source, path)
    }

    /// Indices of the rules that listen to `event_type`, in file order.
    pub fn rules_for(&self, event_type: &str) -> &[usize] {
        self.rules_by_type.get(event_type).map_or(&[], |rules| rules)
    }

    /// The contact an event merges into its own, if its type is a merge type and it names one.
    pub fn merged_contact<'e>(&self, event: &'e Event) -> Option<&'e str> {
        let merge = self.merges.iter().find(|merge| merge.event_type == event.kind)?;
        match event.attr(&merge.attribute)? {
            AttrValue::Text(id) if !id.is_empty() => Some(id),
            _ => None,
        }
    }

    /// The index of the group named `name`.
    pub fn group_index(&self, name: &str) -> Option<usize> {
        self.groups.iter().position(|group| group.name == name)
    }

    /// The index of the phase named `name`.
    pub fn phase_index(&self, name: &str) -> Option<usize> {
        self.phases.iter().position(|phase| phase.name == name)
    }

    /// The index of the phase whose stored key is `key`, if the phase still exists.
    pub fn phase_by_key(&self, key: u32) -> Option<usize> {
        self.phases.iter().position(|phase| phase.key == key)
    }

    /// The index of the group whose stored key is `key`, if the group still exists.
    pub fn group_by_key(&self, key: u32) -> Option<usize> {
        self.groups.iter().position(|group| group.key == key)
    }

    /// What a threshold's target is called: `total` or a group's name.
    pub fn target_name(&self, target: Target) -> &str {
        match target {
            Target::Total => "total",
            Target::Group(group) => self.groups.get(group).map_or("", |group| group.name.as_str()),
        }
    }

    /// The name behind a stored source key: a rule id, `manual`, `clamp`, `merge`, or a phase (history of
    /// phase entries). Keys are hashes of names, so one key never stands for two different names.
    pub fn source_name(&self, key: u32) -> &str {
        match key {
            CLAMP_KEY => CLAMP_SOURCE,
            MANUAL_KEY => MANUAL_SOURCE,
            MERGE_KEY => MERGE_SOURCE,
            _ => self
                .rules
                .iter()
                .find(|rule| rule.key == key)
                .map(|rule| rule.id.as_str())
                .or_else(|| self.phases.iter().find(|phase| phase.key == key).map(|phase| phase.name.as_str()))
                .unwrap_or("retired rule"),
        }
    }
}

/// An event type that says two contact ids are one person.
#[derive(Debug, Clone, PartialEq)]
pub struct MergeOn {
    /// The event type, such as `identify`.
    pub event_type: String,
    /// The attribute naming the contact merged into the event's contact, such as `anonymous_id`.
    pub attribute: String,
}

/// Anonymous visitors: contacts known only by a cookie or device id, removed once idle.
#[derive(Debug, Clone, PartialEq)]
pub struct Anonymous {
    /// The attribute holding the visitor's anonymous id, such as `anonymous_id`: an event whose value of
    /// it is its own contact id is an anonymous visitor's. A contact stays anonymous while every event
    /// scored on it is, and no contact was merged into it.
    pub attribute: String,
    /// Time after a contact's last event at which an anonymous contact is removed.
    pub expire_after_ms: i64,
}

impl Anonymous {
    /// Whether `event` is an anonymous visitor's: it names its own contact as the anonymous id.
    pub fn is_anonymous(&self, event: &Event) -> bool {
        matches!(event.attr(&self.attribute), Some(AttrValue::Text(id)) if *id == event.contact)
    }
}

/// The built-in event type that merges the contact in its `merged` attribute into its own.
pub const MERGE: &str = "merge";

/// Contribution source of the points a group's range cut off.
pub const CLAMP_SOURCE: &str = "clamp";
/// Contribution source of manual adjustments.
pub const MANUAL_SOURCE: &str = "manual";
/// History source of a contact merged into another.
pub const MERGE_SOURCE: &str = "merge";
/// Stored key of [`CLAMP_SOURCE`].
pub const CLAMP_KEY: u32 = crate::hashing::name_key(CLAMP_SOURCE);
/// Stored key of [`MANUAL_SOURCE`].
pub const MANUAL_KEY: u32 = crate::hashing::name_key(MANUAL_SOURCE);
/// Stored key of [`MERGE_SOURCE`].
pub const MERGE_KEY: u32 = crate::hashing::name_key(MERGE_SOURCE);

/// A named score with its range, weight in the total and decay law.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    /// Name, such as `engagement` or `fit`.
    pub name: String,
    /// Stored key (hash of the name).
    pub key: u32,
    /// Lowest value.
    pub min: f64,
    /// Highest value.
    pub max: f64,
    /// Weight in the total.
    pub weight: f64,
    /// How the value fades between events.
    pub decay: DecayLaw,
}

/// How a group's value moves toward 0 as time passes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DecayLaw {
    /// The value stays until points change it.
    None,
    /// v(t) = v·2^(−Δ/half_life).
    Exponential {
        /// Half-life in milliseconds.
        half_life_ms: f64,
    },
    /// |v| falls by a fixed number of points per day until it reaches 0.
    Linear {
        /// Points lost per millisecond.
        per_ms: f64,
    },
    /// Each contribution vanishes a fixed time after it was made.
    Step {
        /// Lifetime of a contribution in milliseconds.
        expire_after_ms: i64,
    },
}

impl std::fmt::Display for DecayLaw {
    /// The law in words: `exponential, half-life 30d`, `linear, 1 point a day`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let span = |ms: f64| {
            let days = ms / 86_400_000.0;
            if days >= 1.0 { format!("{days}d") } else { format!("{}h", ms / 3_600_000.0) }
        };
        match *self {
            DecayLaw::None => f.write_str("no decay"),
            DecayLaw::Exponential { half_life_ms } => write!(f, "exponential, half-life {}", span(half_life_ms)),
            DecayLaw::Linear { per_ms } => {
                let per_day = per_ms * 86_400_000.0;
                write!(f, "linear, {per_day} point{} a day", if per_day == 1.0 { "" } else { "s" })
            }
            DecayLaw::Step { expire_after_ms } => {
                write!(f, "step, each contribution expires after {}", span(expire_after_ms as f64))
            }
        }
    }
}

impl DecayLaw {
    /// `value` after `elapsed_ms` of this decay. A step group's value changes only as its contributions
    /// expire, which the law alone does not know: it is returned as it is.
    pub fn decay(self, value: f64, elapsed_ms: f64) -> f64 {
        match self {
            DecayLaw::None | DecayLaw::Step { .. } => value,
            DecayLaw::Exponential { half_life_ms } => value * (-elapsed_ms / half_life_ms).exp2(),
            DecayLaw::Linear { per_ms } => {
                let amount = per_ms * elapsed_ms;
                if value > 0.0 { (value - amount).max(0.0) } else { (value + amount).min(0.0) }
            }
        }
    }
}

/// One scoring rule: a match on events and an effect.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// Unique id, shown in explanations and history.
    pub id: String,
    /// Stored key (hash of the id).
    pub key: u32,
    /// The event type it listens to.
    pub event_type: String,
    /// The group its points go to (absent for a pure disqualification).
    pub group: Option<usize>,
    /// Item globs; the rule matches if any matches (or if there are none).
    pub items: Vec<Glob>,
    /// Attribute predicates; all must hold.
    pub when: Vec<Predicate>,
    /// What firing does.
    pub effect: Effect,
    /// How often the rule may fire per contact and phase.
    pub limit: Option<Limit>,
}

impl Rule {
    /// Whether the event's item and attributes satisfy this rule (its type is matched by the index).
    pub fn matches(&self, event: &Event) -> bool {
        let item_ok = self.items.is_empty()
            || event.item.as_deref().is_some_and(|item| self.items.iter().any(|glob| glob.matches(item)));
        item_ok && self.when.iter().all(|predicate| predicate.holds(event))
    }
}

/// What a rule does when it fires.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Add points (negative for a malus) to the rule's group.
    Points(f64),
    /// Disqualify the contact, with a reason.
    Disqualify(String),
}

/// A cap on how often a rule fires for one contact within one phase.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limit {
    /// Most firings.
    pub max_times: u32,
    /// Length of the window the count applies to, starting at the first firing in it; whole phase if absent.
    pub per_ms: Option<i64>,
}

/// A test on one event attribute.
#[derive(Debug, Clone, PartialEq)]
pub struct Predicate {
    /// Attribute name.
    pub attr: String,
    /// The comparison.
    pub test: AttrTest,
}

/// The comparisons a predicate can make. A missing attribute fails every test.
#[derive(Debug, Clone, PartialEq)]
pub enum AttrTest {
    /// Equal to the value.
    Eq(AttrValue),
    /// Equal to one of the values.
    In(Vec<AttrValue>),
    /// A text value matching the glob.
    Glob(Glob),
    /// A number below.
    Lt(f64),
    /// A number at most.
    Le(f64),
    /// A number above.
    Gt(f64),
    /// A number at least.
    Ge(f64),
}

impl Predicate {
    /// Whether the event's attribute passes the test.
    pub fn holds(&self, event: &Event) -> bool {
        let Some(value) = event.attr(&self.attr) else {
            return false;
        };
        match (&self.test, value) {
            (AttrTest::Eq(wanted), value) => wanted == value,
            (AttrTest::In(options), value) => options.contains(value),
            (AttrTest::Glob(glob), AttrValue::Text(text)) => glob.matches(text),
            (AttrTest::Lt(bound), AttrValue::Number(n)) => n < bound,
            (AttrTest::Le(bound), AttrValue::Number(n)) => n <= bound,
            (AttrTest::Gt(bound), AttrValue::Number(n)) => n > bound,
            (AttrTest::Ge(bound), AttrValue::Number(n)) => n >= bound,
            _ => false,
        }
    }
}

/// A level on a group or on the total that fires `up` and, with hysteresis, `down`.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    /// Name, such as `high-interest`.
    pub name: String,
    /// Stored key (hash of the name).
    pub key: u32,
    /// What it watches.
    pub target: Target,
    /// Fires up when the target reaches this.
    pub at: f64,
    /// Fires down when the target falls below `at − hysteresis`.
    pub hysteresis: f64,
    /// Phase the contact advances to when it fires up (never backward).
    pub advance_to: Option<usize>,
    /// Conditions besides the level.
    pub requires: Requirements,
}

impl Threshold {
    /// The level below which a fired threshold falls back.
    pub fn down_level(&self) -> f64 {
        self.at - self.hysteresis
    }
}

/// What a threshold watches.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target {
    /// One group's value.
    Group(usize),
    /// The weighted total.
    Total,
}

/// Extra conditions for a threshold to fire up.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Requirements {
    /// The fit grade must be this good or better.
    pub min_grade: Option<Grade>,
    /// The contact must be in one of these phases (any if empty).
    pub phases: Vec<usize>,
}

/// A lifecycle stage.
#[derive(Debug, Clone, PartialEq)]
pub struct Phase {
    /// Name, such as `mql`.
    pub name: String,
    /// Stored key (hash of the name).
    pub key: u32,
    /// Groups set to 0 on entering this phase.
    pub resets: Vec<usize>,
}

/// Fit grades A–D, derived from one group by cut-offs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Grades {
    /// The group graded (usually `fit`).
    pub group: usize,
    /// Lowest value graded A.
    pub a: f64,
    /// Lowest value graded B.
    pub b: f64,
    /// Lowest value graded C; anything lower is D.
    pub c: f64,
}

impl Grades {
    /// The grade of a group value.
    pub fn grade(&self, value: f64) -> Grade {
        if value >= self.a {
            Grade::A
        } else if value >= self.b {
            Grade::B
        } else if value >= self.c {
            Grade::C
        } else {
            Grade::D
        }
    }
}

/// A fit grade; `A` is the best.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Grade {
    /// Best fit.
    A,
    /// Good fit.
    B,
    /// Weak fit.
    C,
    /// Poor fit.
    D,
}

impl Grade {
    /// The grade's letter.
    pub fn letter(self) -> &'static str {
        match self {
            Grade::A => "A",
            Grade::B => "B",
            Grade::C => "C",
            Grade::D => "D",
        }
    }

    /// Parses a letter, `A` to `D`.
    pub fn from_letter(letter: &str) -> Option<Grade> {
        match letter {
            "A" | "a" => Some(Grade::A),
            "B" | "b" => Some(Grade::B),
            "C" | "c" => Some(Grade::C),
            "D" | "d" => Some(Grade::D),
            _ => None,
        }
    }
}
