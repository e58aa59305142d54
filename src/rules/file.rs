//! The rules file as users write it. Every name that another part refers to is `Spanned`, so that a
//! dangling reference is reported at its own line and column.

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RulesFile {
    pub name: Option<String>,
    #[serde(default)]
    pub settings: SettingsFile,
    #[serde(default)]
    pub groups: Vec<GroupFile>,
    pub grades: Option<GradesFile>,
    pub phases: Option<Spanned<Vec<PhaseFile>>>,
    #[serde(default)]
    pub rules: Vec<RuleFile>,
    #[serde(default)]
    pub thresholds: Vec<ThresholdFile>,
    #[serde(default)]
    pub merges: Vec<MergeFile>,
    pub anonymous: Option<AnonymousFile>,
    pub accounts: Option<Spanned<AccountsFile>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AccountsFile {
    pub attribute: Option<Spanned<String>>,
    pub email: Option<Spanned<String>>,
    #[serde(default)]
    pub free_mail: Vec<Spanned<String>>,
    pub score: Option<Spanned<String>>,
    pub top_k: Option<Spanned<i64>>,
    #[serde(default)]
    pub phase_weights: std::collections::BTreeMap<String, Spanned<f64>>,
    #[serde(default)]
    pub thresholds: Vec<AccountThresholdFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AccountThresholdFile {
    pub name: Spanned<String>,
    pub sum: Option<Spanned<f64>>,
    pub max: Option<Spanned<f64>>,
    pub top_k_sum: Option<Spanned<f64>>,
    pub contacts_above: Option<Spanned<f64>>,
    pub contacts: Option<Spanned<i64>>,
    pub min_grade: Option<Spanned<String>>,
    pub graded_contacts: Option<Spanned<i64>>,
    pub hysteresis: Option<Spanned<f64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AnonymousFile {
    pub attribute: Spanned<String>,
    pub expire_after: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MergeFile {
    pub on: Spanned<String>,
    pub merged: Spanned<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SettingsFile {
    pub history: Option<Spanned<i64>>,
    pub dedup_window: Option<Spanned<i64>>,
    pub manual_group: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct GroupFile {
    pub name: Spanned<String>,
    pub min: Option<Spanned<f64>>,
    pub max: Option<Spanned<f64>>,
    pub weight: Option<Spanned<f64>>,
    pub decay: Option<Spanned<String>>,
    pub half_life: Option<Spanned<String>>,
    pub per_day: Option<Spanned<f64>>,
    pub expire_after: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct GradesFile {
    pub group: Spanned<String>,
    pub a: Spanned<f64>,
    pub b: Spanned<f64>,
    pub c: Spanned<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PhaseFile {
    pub name: Spanned<String>,
    #[serde(default)]
    pub resets: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RuleFile {
    pub id: Spanned<String>,
    pub on: Spanned<String>,
    pub group: Option<Spanned<String>>,
    #[serde(default)]
    pub items: Vec<Spanned<String>>,
    #[serde(default)]
    pub when: Vec<Spanned<PredicateFile>>,
    pub points: Option<Spanned<f64>>,
    pub disqualify: Option<Spanned<String>>,
    pub max_times: Option<Spanned<i64>>,
    pub per: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PredicateFile {
    pub attr: String,
    pub eq: Option<toml::Value>,
    #[serde(rename = "in")]
    pub any_of: Option<Vec<toml::Value>>,
    pub glob: Option<String>,
    pub lt: Option<f64>,
    pub le: Option<f64>,
    pub gt: Option<f64>,
    pub ge: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ThresholdFile {
    pub name: Spanned<String>,
    pub target: Spanned<String>,
    pub at: Spanned<f64>,
    pub hysteresis: Option<Spanned<f64>>,
    pub advance_to: Option<Spanned<String>>,
    pub requires: Option<RequiresFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RequiresFile {
    pub min_grade: Option<Spanned<String>>,
    #[serde(default)]
    pub phases: Vec<Spanned<String>>,
}
