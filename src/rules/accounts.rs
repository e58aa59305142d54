//! Account scoring in the rules file (`[accounts]`): how an event names its contact's account, what a
//! contact contributes to it, and the account thresholds.

use std::collections::HashSet;

use toml::Spanned;

use super::compile::{RulesError, Source};
use super::file::{AccountThresholdFile, AccountsFile};
use super::{Grade, Grades, Group, Phase, Target};
use crate::event::{AttrValue, Event};
use crate::hashing::name_key;

/// Domains of free mail providers: an address there names a person, not a company.
const FREE_MAIL: &[&str] = &[
    "163.com",
    "aol.com",
    "fastmail.com",
    "freenet.de",
    "gmail.com",
    "gmx.com",
    "gmx.de",
    "gmx.net",
    "googlemail.com",
    "hey.com",
    "hotmail.com",
    "icloud.com",
    "live.com",
    "mac.com",
    "mail.com",
    "mail.ru",
    "me.com",
    "msn.com",
    "outlook.com",
    "posteo.de",
    "proton.me",
    "protonmail.com",
    "qq.com",
    "t-online.de",
    "tutanota.com",
    "web.de",
    "yahoo.co.uk",
    "yahoo.com",
    "yandex.ru",
    "zoho.com",
];

/// Default number of contacts the `top_k_sum` aggregate adds.
const DEFAULT_TOP_K: i64 = 3;

/// How contacts map to accounts and how accounts are scored.
#[derive(Debug, Clone, PartialEq)]
pub struct AccountRules {
    /// The event attribute naming the account, if any: looked at first.
    pub attribute: Option<String>,
    /// The event attribute holding an e-mail address whose domain names the account, if any.
    pub email: Option<String>,
    /// Domains that name no account.
    pub free_mail: HashSet<String>,
    /// What a contact contributes: its total or one group's value.
    pub score: Target,
    /// How many of the best contacts `top_k_sum` adds.
    pub top_k: usize,
    /// Per phase, in phase order: the factor on a contact's score in that phase (1 unless declared).
    pub phase_weights: Vec<f64>,
    /// Account thresholds in file order.
    pub thresholds: Vec<AccountThreshold>,
}

/// A threshold on an account: every condition it declares holds.
#[derive(Debug, Clone, PartialEq)]
pub struct AccountThreshold {
    /// Name, unique among account thresholds.
    pub name: String,
    /// Stored key (hash of the name).
    pub key: u32,
    /// The weighted sum of its contacts' scores is at least this.
    pub sum: Option<f64>,
    /// Its best contact's weighted score is at least this.
    pub max: Option<f64>,
    /// The sum of its best `top_k` contacts' weighted scores is at least this.
    pub top_k_sum: Option<f64>,
    /// At least `count` contacts have a weighted score of at least `level`: (level, count).
    pub contacts_above: Option<(f64, usize)>,
    /// At least `count` contacts have this grade or better: (grade, count).
    pub graded: Option<(Grade, usize)>,
    /// Once fired, a level condition fails only below its level less this.
    pub hysteresis: f64,
}

impl AccountRules {
    /// The account an event names: its account attribute, else the domain of its e-mail attribute unless
    /// that is a free mail provider's. Domains are compared in lower case.
    pub fn account_of(&self, event: &Event) -> Option<String> {
        let text = |name: &Option<String>| match event.attr(name.as_deref()?) {
            Some(AttrValue::Text(value)) if !value.trim().is_empty() => Some(value.trim()),
            _ => None,
        };
        if let Some(account) = text(&self.attribute) {
            return Some(account.to_owned());
        }
        let (_, domain) = text(&self.email)?.rsplit_once('@')?;
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        (!domain.is_empty() && !self.free_mail.contains(&domain)).then_some(domain)
    }
}

/// Compiles `[accounts]`.
pub(super) fn compile(
    source: &Source<'_>,
    file: &AccountsFile,
    groups: &[Group],
    phases: &[Phase],
    grades: Option<&Grades>,
) -> Result<AccountRules, RulesError> {
    let name = |field: &Option<Spanned<String>>, what: &str| match field {
        Some(name) if name.get_ref().trim().is_empty() => {
            Err(source.at(name, format!("{what} must name an attribute")))
        }
        Some(name) => Ok(Some(name.get_ref().clone())),
        None => Ok(None),
    };
    let attribute = name(&file.attribute, "attribute")?;
    let email = name(&file.email, "email")?;
    if attribute.is_none() && email.is_none() {
        return Err(source.error(
            0..0,
            "[accounts] needs `attribute` (naming the account) or `email` (whose domain names it), or both",
        ));
    }
    let mut free_mail: HashSet<String> = FREE_MAIL.iter().map(|domain| (*domain).to_owned()).collect();
    for domain in &file.free_mail {
        let text = domain.get_ref().trim().to_ascii_lowercase();
        if text.is_empty() || text.contains('@') {
            return Err(source.at(domain, "free_mail lists domains, such as \"example.net\""));
        }
        free_mail.insert(text);
    }
    let score = match &file.score {
        None => Target::Total,
        Some(name) if name.get_ref() == "total" => Target::Total,
        Some(name) => match groups.iter().position(|group| group.name == *name.get_ref()) {
            Some(index) => Target::Group(index),
            None => {
                return Err(
                    source.at(name, format!("score must be \"total\" or a group; no group {:?}", name.get_ref()))
                );
            }
        },
    };
    let top_k = match &file.top_k {
        None => DEFAULT_TOP_K as usize,
        Some(k) => match usize::try_from(*k.get_ref()) {
            Ok(k) if (1..=1000).contains(&k) => k,
            _ => return Err(source.at(k, "top_k must be between 1 and 1000")),
        },
    };
    let mut phase_weights = vec![1.0; phases.len()];
    for (phase, weight) in &file.phase_weights {
        let Some(index) = phases.iter().position(|known| known.name == *phase) else {
            let known: Vec<&str> = phases.iter().map(|phase| phase.name.as_str()).collect();
            return Err(source.at(weight, format!("unknown phase {phase:?}; declared phases: {}", known.join(", "))));
        };
        if !(weight.get_ref().is_finite() && *weight.get_ref() >= 0.0) {
            return Err(source.at(weight, "a phase weight must be a number of at least 0"));
        }
        phase_weights[index] = *weight.get_ref();
    }
    let mut thresholds: Vec<AccountThreshold> = Vec::new();
    for threshold in &file.thresholds {
        let compiled = compile_threshold(source, threshold, grades)?;
        if thresholds.iter().any(|other| other.name == compiled.name) {
            return Err(source.at(&threshold.name, format!("account threshold {:?} is declared twice", compiled.name)));
        }
        thresholds.push(compiled);
    }
    Ok(AccountRules { attribute, email, free_mail, score, top_k, phase_weights, thresholds })
}

fn compile_threshold(
    source: &Source<'_>,
    file: &AccountThresholdFile,
    grades: Option<&Grades>,
) -> Result<AccountThreshold, RulesError> {
    let name = file.name.get_ref().trim();
    if name.is_empty() {
        return Err(source.at(&file.name, "account threshold name must not be empty"));
    }
    let level = |field: &Option<Spanned<f64>>| match field {
        Some(value) if !value.get_ref().is_finite() => Err(source.at(value, "a level must be a finite number")),
        Some(value) => Ok(Some(*value.get_ref())),
        None => Ok(None),
    };
    let count = |field: &Option<Spanned<i64>>, what: &str| match field {
        None => Ok(1),
        Some(count) => match usize::try_from(*count.get_ref()) {
            Ok(count) if count >= 1 => Ok(count),
            _ => Err(source.at(count, format!("{what} must be at least 1"))),
        },
    };
    let contacts_above = match level(&file.contacts_above)? {
        Some(level) => Some((level, count(&file.contacts, "contacts")?)),
        None if file.contacts.is_some() => {
            return Err(source.at(&file.name, "`contacts` counts contacts above `contacts_above`, which is missing"));
        }
        None => None,
    };
    let graded = match &file.min_grade {
        Some(letter) => {
            let grade = Grade::from_letter(letter.get_ref())
                .ok_or_else(|| source.at(letter, "min_grade must be one of A, B, C, D"))?;
            if grades.is_none() {
                return Err(source.at(letter, "min_grade needs [grades] in the rules file"));
            }
            Some((grade, count(&file.graded_contacts, "graded_contacts")?))
        }
        None if file.graded_contacts.is_some() => {
            return Err(source.at(&file.name, "`graded_contacts` counts contacts of `min_grade`, which is missing"));
        }
        None => None,
    };
    let hysteresis = match &file.hysteresis {
        Some(value) if !(value.get_ref().is_finite() && *value.get_ref() >= 0.0) => {
            return Err(source.at(value, "hysteresis must be a number of at least 0"));
        }
        Some(value) => *value.get_ref(),
        None => 0.0,
    };
    let threshold = AccountThreshold {
        name: name.to_owned(),
        key: name_key(name),
        sum: level(&file.sum)?,
        max: level(&file.max)?,
        top_k_sum: level(&file.top_k_sum)?,
        contacts_above,
        graded,
        hysteresis,
    };
    if threshold.sum.is_none()
        && threshold.max.is_none()
        && threshold.top_k_sum.is_none()
        && threshold.contacts_above.is_none()
        && threshold.graded.is_none()
    {
        return Err(source.at(
            &file.name,
            "an account threshold needs a condition: sum, max, top_k_sum, contacts_above or min_grade",
        ));
    }
    Ok(threshold)
}
