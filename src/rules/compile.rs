//! Validation of the rules file and its compilation into [`Rules`].

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;

use super::file::{GroupFile, PredicateFile, RuleFile, RulesFile, ThresholdFile};
use super::{
    Anonymous, AttrTest, CLAMP_KEY, CLAMP_SOURCE, DecayLaw, Effect, Glob, Grade, Grades, Group, Limit, MANUAL_KEY,
    MANUAL_SOURCE, MERGE, MERGE_KEY, MERGE_SOURCE, MergeOn, Phase, Predicate, Requirements, Rule, Rules, Target,
    Threshold, parse_duration_ms,
};
use crate::event::{AttrValue, ERASE, MANUAL_ADJUSTMENT, PHASE_CHANGE, REQUALIFY};
use crate::hashing::{id_fingerprint, name_key};

/// Default number of history entries per contact.
const DEFAULT_HISTORY: i64 = 20;
/// Default number of recent event ids remembered per contact.
const DEFAULT_DEDUP_WINDOW: i64 = 32;
/// Name of the threshold target that means the weighted total.
const TOTAL_TARGET: &str = "total";

/// A rules file that cannot be used, with where and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}:{line}:{column}: {message}", file.display())]
pub struct RulesError {
    /// The file.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

impl RulesError {
    pub(super) fn io(path: &Path, err: &std::io::Error) -> Self {
        RulesError { file: path.to_owned(), line: 1, column: 1, message: format!("cannot read the rules file: {err}") }
    }
}

/// Collects the location context for errors.
pub(super) struct Source<'a> {
    text: &'a str,
    path: &'a Path,
}

impl Source<'_> {
    pub(super) fn error(&self, span: Range<usize>, message: impl Into<String>) -> RulesError {
        let (line, column) = line_column(self.text, span.start);
        RulesError { file: self.path.to_owned(), line, column, message: message.into() }
    }

    pub(super) fn at<T>(&self, spanned: &Spanned<T>, message: impl Into<String>) -> RulesError {
        self.error(spanned.span(), message)
    }
}

/// 1-based line and column (in characters) of a byte offset: how rules and config errors are located.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |index| index + 1);
    (before.matches('\n').count() + 1, before[line_start..].chars().count() + 1)
}

pub(super) fn compile(text: &str, path: &Path) -> Result<Rules, RulesError> {
    let source = Source { text, path };
    let file: RulesFile = toml::from_str(text).map_err(|err| {
        let span = err.span().unwrap_or(0..0);
        source.error(span, err.message().trim().to_owned())
    })?;

    let groups = compile_groups(&source, &file.groups)?;
    let group_names: HashMap<&str, usize> =
        groups.iter().enumerate().map(|(index, group)| (group.name.as_str(), index)).collect();
    let find_group = |name: &Spanned<String>| {
        group_names.get(name.get_ref().as_str()).copied().ok_or_else(|| {
            source.at(name, format!("unknown group {:?}; declared groups: {}", name.get_ref(), names(&groups)))
        })
    };

    let Some(phase_files) = &file.phases else {
        return Err(source.error(0..0, "no phases declared; add at least one [[phases]] table"));
    };
    if phase_files.get_ref().is_empty() {
        return Err(source.at(phase_files, "the phase list is empty; declare at least one phase"));
    }
    let mut phases = Vec::new();
    let mut phase_names = HashMap::new();
    for phase in phase_files.get_ref() {
        let name = phase.name.get_ref();
        check_name(&source, &phase.name, "phase")?;
        if phase_names.insert(name.clone(), phases.len()).is_some() {
            return Err(source.at(&phase.name, format!("phase {name:?} is declared twice")));
        }
        let resets = phase.resets.iter().map(&find_group).collect::<Result<Vec<_>, _>>()?;
        phases.push(Phase { name: name.clone(), key: name_key(name), resets });
    }
    let find_phase = |name: &Spanned<String>| {
        phase_names.get(name.get_ref()).copied().ok_or_else(|| {
            let known: Vec<&str> = phases.iter().map(|phase| phase.name.as_str()).collect();
            source.at(name, format!("unknown phase {:?}; declared phases: {}", name.get_ref(), known.join(", ")))
        })
    };

    let grades = match &file.grades {
        None => None,
        Some(grades) => {
            let group = find_group(&grades.group)?;
            let (a, b, c) = (*grades.a.get_ref(), *grades.b.get_ref(), *grades.c.get_ref());
            if !(a > b && b > c) {
                return Err(source.at(&grades.a, "grade cut-offs must fall strictly: a > b > c"));
            }
            Some(Grades { group, a, b, c })
        }
    };

    let mut rules = Vec::new();
    let mut rule_ids = HashSet::new();
    for rule in &file.rules {
        let compiled = compile_rule(&source, rule, &find_group)?;
        if !rule_ids.insert(compiled.id.clone()) {
            return Err(source.at(&rule.id, format!("rule {:?} is declared twice", compiled.id)));
        }
        rules.push(compiled);
    }
    check_keys_unique(&source, &file, &rules)?;

    let mut thresholds = Vec::new();
    for threshold in &file.thresholds {
        let compiled = compile_threshold(&source, threshold, &find_group, &find_phase)?;
        if compiled.requires.min_grade.is_some() && grades.is_none() {
            return Err(source.at(&threshold.name, "requires a min_grade, but the file declares no [grades]"));
        }
        if thresholds.iter().any(|other: &Threshold| other.name == compiled.name) {
            return Err(source.at(&threshold.name, format!("threshold {:?} is declared twice", compiled.name)));
        }
        thresholds.push(compiled);
    }

    let settings = &file.settings;
    let manual_group = match &settings.manual_group {
        Some(name) => find_group(name)?,
        None => 0,
    };
    if groups.is_empty() {
        return Err(source.error(0..0, "no groups declared; add at least one [[groups]] table"));
    }
    let history_limit = positive_count(&source, settings.history.as_ref(), DEFAULT_HISTORY, "history")?;
    let dedup_window = positive_count(&source, settings.dedup_window.as_ref(), DEFAULT_DEDUP_WINDOW, "dedup_window")?;

    let mut merges = vec![MergeOn { event_type: MERGE.to_owned(), attribute: "merged".to_owned() }];
    for merge in &file.merges {
        let kind = merge.on.get_ref();
        if [ERASE, PHASE_CHANGE, MANUAL_ADJUSTMENT, REQUALIFY].contains(&kind.as_str()) || kind.trim().is_empty() {
            return Err(source.at(&merge.on, format!("{kind:?} cannot merge contacts; name an event type of your own")));
        }
        if merges.iter().any(|other| other.event_type == *kind) {
            return Err(source.at(&merge.on, format!("event type {kind:?} already merges contacts")));
        }
        if merge.merged.get_ref().trim().is_empty() {
            return Err(source.at(&merge.merged, "name the attribute that holds the merged contact's id"));
        }
        merges.push(MergeOn { event_type: kind.clone(), attribute: merge.merged.get_ref().clone() });
    }

    let anonymous = match &file.anonymous {
        None => None,
        Some(anonymous) => {
            if anonymous.attribute.get_ref().trim().is_empty() {
                return Err(source.at(&anonymous.attribute, "name the attribute that holds an anonymous visitor's id"));
            }
            let expire_after = &anonymous.expire_after;
            let idle_ms = parse_duration_ms(expire_after.get_ref())
                .map_err(|reason| source.at(expire_after, format!("expire_after: {reason}")))?;
            Some(Anonymous { attribute: anonymous.attribute.get_ref().clone(), expire_after_ms: idle_ms })
        }
    };

    let accounts = match &file.accounts {
        Some(accounts) => {
            Some(super::accounts::compile(&source, accounts.get_ref(), &groups, &phases, grades.as_ref())?)
        }
        None => None,
    };

    let mut rules_by_type: HashMap<String, Vec<usize>> = HashMap::new();
    for (index, rule) in rules.iter().enumerate() {
        rules_by_type.entry(rule.event_type.clone()).or_default().push(index);
    }
    let hash = format!("{:016x}", id_fingerprint(text));
    let version = match &file.name {
        Some(name) => format!("{name}@{}", &hash[..12]),
        None => hash[..12].to_owned(),
    };
    Ok(Rules {
        name: file.name.clone(),
        version,
        groups,
        rules,
        thresholds,
        phases,
        grades,
        manual_group,
        history_limit,
        dedup_window,
        merges,
        anonymous,
        accounts,
        rules_by_type: rules_by_type.into_iter().map(|(kind, list)| (kind, list.into_boxed_slice())).collect(),
    })
}

fn names(groups: &[Group]) -> String {
    let names: Vec<&str> = groups.iter().map(|group| group.name.as_str()).collect();
    if names.is_empty() { "none".to_owned() } else { names.join(", ") }
}

fn check_name(source: &Source<'_>, name: &Spanned<String>, what: &str) -> Result<(), RulesError> {
    let text = name.get_ref();
    if text.trim().is_empty() {
        return Err(source.at(name, format!("{what} name must not be empty")));
    }
    if text == CLAMP_SOURCE || text == MANUAL_SOURCE || text == MERGE_SOURCE {
        return Err(source.at(name, format!("{text:?} is reserved and cannot name a {what}")));
    }
    Ok(())
}

fn positive_count(
    source: &Source<'_>,
    value: Option<&Spanned<i64>>,
    default: i64,
    what: &str,
) -> Result<usize, RulesError> {
    let Some(value) = value else {
        return Ok(default as usize);
    };
    match usize::try_from(*value.get_ref()) {
        Ok(count) if (1..=10_000).contains(&count) => Ok(count),
        _ => Err(source.at(value, format!("{what} must be between 1 and 10000"))),
    }
}

fn compile_groups(source: &Source<'_>, files: &[GroupFile]) -> Result<Vec<Group>, RulesError> {
    let mut groups: Vec<Group> = Vec::new();
    for file in files {
        check_name(source, &file.name, "group")?;
        let name = file.name.get_ref().clone();
        if name == TOTAL_TARGET {
            return Err(source.at(&file.name, "\"total\" is reserved for the weighted total"));
        }
        if groups.iter().any(|group| group.name == name) {
            return Err(source.at(&file.name, format!("group {name:?} is declared twice")));
        }
        let min = file.min.as_ref().map_or(0.0, |min| *min.get_ref());
        let max = file.max.as_ref().map_or(100.0, |max| *max.get_ref());
        if !(min.is_finite() && max.is_finite() && min <= 0.0 && 0.0 <= max && min < max) {
            let at = file.min.as_ref().or(file.max.as_ref()).map_or(file.name.span(), Spanned::span);
            return Err(source.error(at, "a group's range needs min ≤ 0 ≤ max and min < max"));
        }
        let weight = file.weight.as_ref().map_or(1.0, |weight| *weight.get_ref());
        if !weight.is_finite() {
            let at = file.weight.as_ref().map_or(file.name.span(), Spanned::span);
            return Err(source.error(at, "weight must be a finite number"));
        }
        let decay = compile_decay(source, file)?;
        groups.push(Group { key: name_key(&name), name, min, max, weight, decay });
    }
    Ok(groups)
}

fn compile_decay(source: &Source<'_>, file: &GroupFile) -> Result<DecayLaw, RulesError> {
    let law = file.decay.as_ref().map_or("none", |law| law.get_ref().as_str());
    let law_span = file.decay.as_ref().map_or(file.name.span(), Spanned::span);
    let unexpected = |field: &str, present: bool| -> Result<(), RulesError> {
        if present {
            Err(source.error(law_span.clone(), format!("`{field}` does not apply to decay = {law:?}")))
        } else {
            Ok(())
        }
    };
    let duration = |field: &Option<Spanned<String>>, name: &str| -> Result<i64, RulesError> {
        let Some(text) = field else {
            return Err(source.error(law_span.clone(), format!("decay = {law:?} needs `{name}`, such as \"30d\"")));
        };
        parse_duration_ms(text.get_ref()).map_err(|reason| source.at(text, format!("{name}: {reason}")))
    };
    match law {
        "none" => {
            unexpected("half_life", file.half_life.is_some())?;
            unexpected("per_day", file.per_day.is_some())?;
            unexpected("expire_after", file.expire_after.is_some())?;
            Ok(DecayLaw::None)
        }
        "exponential" => {
            unexpected("per_day", file.per_day.is_some())?;
            unexpected("expire_after", file.expire_after.is_some())?;
            Ok(DecayLaw::Exponential { half_life_ms: duration(&file.half_life, "half_life")? as f64 })
        }
        "linear" => {
            unexpected("half_life", file.half_life.is_some())?;
            unexpected("expire_after", file.expire_after.is_some())?;
            let Some(per_day) = &file.per_day else {
                return Err(source.error(law_span, "decay = \"linear\" needs `per_day`, the points lost per day"));
            };
            let points = *per_day.get_ref();
            if !(points.is_finite() && points > 0.0) {
                return Err(source.at(per_day, "per_day must be a positive number"));
            }
            Ok(DecayLaw::Linear { per_ms: points / 86_400_000.0 })
        }
        "step" => {
            unexpected("half_life", file.half_life.is_some())?;
            unexpected("per_day", file.per_day.is_some())?;
            Ok(DecayLaw::Step { expire_after_ms: duration(&file.expire_after, "expire_after")? })
        }
        other => Err(source.error(
            law_span,
            format!("unknown decay law {other:?}; use \"none\", \"exponential\", \"linear\" or \"step\""),
        )),
    }
}

fn compile_rule(
    source: &Source<'_>,
    file: &RuleFile,
    find_group: &impl Fn(&Spanned<String>) -> Result<usize, RulesError>,
) -> Result<Rule, RulesError> {
    check_name(source, &file.id, "rule")?;
    let id = file.id.get_ref().clone();
    if file.on.get_ref().trim().is_empty() {
        return Err(source.at(&file.on, "`on` must name an event type"));
    }
    let group = file.group.as_ref().map(find_group).transpose()?;
    let effect = match (&file.points, &file.disqualify) {
        (Some(points), None) => {
            let value = *points.get_ref();
            if !value.is_finite() || value == 0.0 {
                return Err(source.at(points, "points must be a finite, non-zero number"));
            }
            if group.is_none() {
                return Err(source.at(&file.id, format!("rule {id:?} gives points but names no `group`")));
            }
            Effect::Points(value)
        }
        (None, Some(reason)) => {
            if reason.get_ref().trim().is_empty() {
                return Err(source.at(reason, "disqualify needs a reason"));
            }
            Effect::Disqualify(reason.get_ref().clone())
        }
        (Some(points), Some(_)) => {
            return Err(source.at(points, "a rule either gives `points` or does `disqualify`, not both"));
        }
        (None, None) => {
            return Err(source.at(&file.id, format!("rule {id:?} needs `points` or `disqualify`")));
        }
    };
    let limit = match (&file.max_times, &file.per) {
        (None, None) => None,
        (None, Some(per)) => return Err(source.at(per, "`per` needs `max_times`")),
        (Some(max_times), per) => {
            let max = u32::try_from(*max_times.get_ref())
                .ok()
                .filter(|max| *max > 0)
                .ok_or_else(|| source.at(max_times, "max_times must be a positive integer"))?;
            let per_ms = per
                .as_ref()
                .map(|per| parse_duration_ms(per.get_ref()).map_err(|reason| source.at(per, format!("per: {reason}"))))
                .transpose()?;
            Some(Limit { max_times: max, per_ms })
        }
    };
    let when = file.when.iter().map(|predicate| compile_predicate(source, predicate)).collect::<Result<_, _>>()?;
    Ok(Rule {
        key: name_key(&id),
        id,
        event_type: file.on.get_ref().clone(),
        group,
        items: file.items.iter().map(|glob| Glob::new(glob.get_ref())).collect(),
        when,
        effect,
        limit,
    })
}

fn compile_predicate(source: &Source<'_>, spanned: &Spanned<PredicateFile>) -> Result<Predicate, RulesError> {
    let file = spanned.get_ref();
    let scalar = |value: &toml::Value| -> Result<AttrValue, RulesError> {
        match value {
            toml::Value::String(text) => Ok(AttrValue::Text(text.clone())),
            toml::Value::Integer(number) => Ok(AttrValue::Number(*number as f64)),
            toml::Value::Float(number) => Ok(AttrValue::Number(*number)),
            toml::Value::Boolean(flag) => Ok(AttrValue::Flag(*flag)),
            _ => Err(source.at(spanned, "predicate values must be strings, numbers or bools")),
        }
    };
    let mut tests = Vec::new();
    if let Some(value) = &file.eq {
        tests.push(AttrTest::Eq(scalar(value)?));
    }
    if let Some(values) = &file.any_of {
        tests.push(AttrTest::In(values.iter().map(scalar).collect::<Result<_, _>>()?));
    }
    if let Some(pattern) = &file.glob {
        tests.push(AttrTest::Glob(Glob::new(pattern)));
    }
    for (bound, make) in [
        (file.lt, AttrTest::Lt as fn(f64) -> AttrTest),
        (file.le, AttrTest::Le),
        (file.gt, AttrTest::Gt),
        (file.ge, AttrTest::Ge),
    ] {
        if let Some(bound) = bound {
            tests.push(make(bound));
        }
    }
    if tests.len() != 1 {
        return Err(source.at(spanned, "a predicate needs exactly one of eq, in, glob, lt, le, gt, ge"));
    }
    let test = tests.remove(0);
    Ok(Predicate { attr: file.attr.clone(), test })
}

fn compile_threshold(
    source: &Source<'_>,
    file: &ThresholdFile,
    find_group: &impl Fn(&Spanned<String>) -> Result<usize, RulesError>,
    find_phase: &impl Fn(&Spanned<String>) -> Result<usize, RulesError>,
) -> Result<Threshold, RulesError> {
    check_name(source, &file.name, "threshold")?;
    let target =
        if file.target.get_ref() == TOTAL_TARGET { Target::Total } else { Target::Group(find_group(&file.target)?) };
    let at = *file.at.get_ref();
    if !at.is_finite() {
        return Err(source.at(&file.at, "`at` must be a finite number"));
    }
    let hysteresis = match &file.hysteresis {
        Some(value) if !(value.get_ref().is_finite() && *value.get_ref() >= 0.0) => {
            return Err(source.at(value, "hysteresis must be a number ≥ 0"));
        }
        Some(value) => *value.get_ref(),
        None => 0.0,
    };
    let advance_to = file.advance_to.as_ref().map(find_phase).transpose()?;
    let mut requires = Requirements::default();
    if let Some(file) = &file.requires {
        if let Some(letter) = &file.min_grade {
            requires.min_grade = Some(
                Grade::from_letter(letter.get_ref())
                    .ok_or_else(|| source.at(letter, "min_grade must be one of A, B, C, D"))?,
            );
        }
        requires.phases = file.phases.iter().map(find_phase).collect::<Result<_, _>>()?;
    }
    let name = file.name.get_ref().clone();
    Ok(Threshold { key: name_key(&name), name, target, at, hysteresis, advance_to, requires })
}

/// Stored state refers to names by hash; two names with one hash would be confused, so refuse them.
fn check_keys_unique(source: &Source<'_>, file: &RulesFile, rules: &[Rule]) -> Result<(), RulesError> {
    let mut seen: HashMap<u32, &str> =
        HashMap::from([(CLAMP_KEY, CLAMP_SOURCE), (MANUAL_KEY, MANUAL_SOURCE), (MERGE_KEY, MERGE_SOURCE)]);
    for (rule, spanned) in rules.iter().zip(&file.rules) {
        if let Some(other) = seen.insert(rule.key, &rule.id) {
            return Err(source.at(&spanned.id, format!("rule id {:?} collides with {other:?}; rename one", rule.id)));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::line_column;

    #[test]
    fn locates_offsets() {
        let text = "a = 1\nbé = 2\n";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 6), (2, 1));
        assert_eq!(line_column(text, 9), (2, 3));
    }
}
