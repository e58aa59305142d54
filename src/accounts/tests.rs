//! Accounts against their contacts: aggregates equal what the members' own states say at any time,
//! thresholds fire with all their conditions and fall with hysteresis at the exact millisecond.

use std::collections::BTreeMap;
use std::path::Path;

use proptest::prelude::*;

use super::*;
use crate::event::{AttrValue, Event};
use crate::scoring::apply as score;
use crate::scoring::first_time;

const DAY: i64 = 86_400_000;
const T0: i64 = 1_772_366_400_000; // 2026-03-01T12:00:00Z

const RULES: &str = r#"
[[groups]]
name = "engagement"
decay = "exponential"
half_life = "10d"
[[groups]]
name = "fit"
[grades]
group = "fit"
a = 50
b = 30
c = 10
[[phases]]
name = "lead"
[[phases]]
name = "mql"
[[rules]]
id = "visit"
on = "page_visit"
group = "engagement"
points = 25
[[rules]]
id = "title"
on = "profile_update"
group = "fit"
points = 60
max_times = 1

[accounts]
attribute = "account_id"
email = "email"
free_mail = ["example.net"]
phase_weights = { mql = 2 }

[[accounts.thresholds]]
name = "mqa"
contacts_above = 40
contacts = 3
min_grade = "A"
hysteresis = 10

[[accounts.thresholds]]
name = "busy"
sum = 150
"#;

fn rules() -> Rules {
    Rules::parse(RULES, Path::new("accounts.toml")).unwrap_or_else(|err| panic!("{err}"))
}

fn event(id: &str, contact: &str, kind: &str, ts_ms: i64, attrs: &[(&str, &str)]) -> Event {
    Event {
        id: id.into(),
        contact: contact.into(),
        kind: kind.into(),
        ts_ms,
        item: None,
        attrs: attrs.iter().map(|(name, value)| ((*name).to_owned(), AttrValue::Text((*value).into()))).collect(),
        adjustment: None,
        phase: None,
    }
}

fn contact(rules: &Rules, contact: &str, visits: usize, title: bool) -> ContactState {
    let mut state = None;
    for visit in 0..visits {
        state = score(rules, state, &event(&format!("{contact}-v{visit}"), contact, "page_visit", T0, &[])).state;
    }
    if title {
        state = score(rules, state, &event(&format!("{contact}-t"), contact, "profile_update", T0, &[])).state;
    }
    state.unwrap_or_else(|| panic!("no state"))
}

fn upsert(rules: &Rules, account: Option<AccountState>, state: &ContactState, at_ms: i64) -> AccountApplied {
    let change = MemberChange::Upsert(Member::of(rules, state));
    apply(rules, account, "acme.io", change, at_ms, &format!("{}-up", state.contact))
}

fn crossings(outputs: &[AccountOutput]) -> Vec<(String, Direction, i64)> {
    outputs
        .iter()
        .filter_map(|output| match &output.body {
            AccountBody::AccountThresholdCrossed(crossed) => {
                Some((crossed.threshold.clone(), crossed.direction, crossed.crossed_at))
            }
            AccountBody::AccountScoreChanged(_) => None,
        })
        .collect()
}

#[test]
fn an_event_names_its_account_by_attribute_else_by_a_company_mail_domain() {
    let rules = rules();
    let accounts = rules.accounts.as_ref().unwrap_or_else(|| panic!("no [accounts]"));
    let of = |attrs: &[(&str, &str)]| accounts.account_of(&event("e", "c", "page_visit", T0, attrs));
    assert_eq!(of(&[("account_id", "A-17"), ("email", "x@acme.io")]), Some("A-17".to_owned()));
    assert_eq!(of(&[("email", "Jo@Sales.ACME.io")]), Some("sales.acme.io".to_owned()));
    assert_eq!(of(&[("email", "jo@gmail.com")]), None, "built-in free mail");
    assert_eq!(of(&[("email", "jo@example.net")]), None, "declared free mail");
    assert_eq!(of(&[("email", "not an address")]), None);
    assert_eq!(of(&[]), None);
    // The contact keeps the account its latest event named, even when no rule listens to that event.
    let state = score(&rules, None, &event("e-1", "c", "newsletter_open", T0, &[("email", "jo@acme.io")])).state;
    assert_eq!(state.as_ref().and_then(|state| state.account.as_deref()), Some("acme.io"));
    let moved = score(&rules, state, &event("e-2", "c", "newsletter_open", T0, &[("account_id", "globex")]));
    assert_eq!(moved.outcome, crate::scoring::Outcome::Scored);
    assert_eq!(moved.state.and_then(|state| state.account), Some("globex".to_owned()));
}

#[test]
fn a_marketing_qualified_account_fires_with_all_its_conditions_and_falls_at_its_exact_millisecond() {
    let rules = rules();
    // Two engaged contacts of grade A (fit 60) and one engaged contact without fit.
    let ana = contact(&rules, "ana", 1, true); // 25 + 60 = 85
    let ben = contact(&rules, "ben", 2, false); // 50
    let cy = contact(&rules, "cy", 0, true); // 60
    let first = upsert(&rules, None, &ana, T0);
    assert_eq!(crossings(&first.outputs), []);
    let second = upsert(&rules, first.state, &ben, T0);
    assert_eq!(crossings(&second.outputs), [], "sum 135; two contacts are not three");
    let applied = upsert(&rules, second.state, &cy, T0);
    assert_eq!(
        crossings(&applied.outputs),
        [("mqa".to_owned(), Direction::Up, T0), ("busy".to_owned(), Direction::Up, T0)],
        "three contacts above 40, one of grade A; sum 195"
    );
    let account = applied.state.unwrap_or_else(|| panic!("no account"));
    assert_eq!(account.aggregate(&rules, T0), Aggregate { contacts: 3, sum: 195.0, max: 85.0, top_k_sum: 195.0 });

    // Ben's 50 decays below 40 - 10 = 30 first: the account falls when Ben does, to the millisecond.
    let ben_falls = crate::scoring::fall_time(&rules, &ben, crate::rules::Target::Total, 30.0, T0)
        .unwrap_or_else(|| panic!("no fall"));
    // The sum falls below 150 later: only the 75 points of engagement decay, 120 of fit stay.
    let sum_falls = first_time(T0, |at| account.aggregate(&rules, at).sum < 150.0).unwrap_or_else(|| panic!("no fall"));
    assert!(ben_falls < sum_falls);
    assert_eq!(account.next_timer_ms, Some(ben_falls));
    let early = on_timer(&rules, account.clone(), ben_falls - 1);
    assert_eq!((early.state, early.outputs.len()), (Some(account.clone()), 0), "not due yet");
    let fallen = on_timer(&rules, account, ben_falls);
    assert_eq!(crossings(&fallen.outputs), [("mqa".to_owned(), Direction::Down, ben_falls)]);
    let account = fallen.state.unwrap_or_else(|| panic!("no account"));
    assert_eq!(account.next_timer_ms, Some(sum_falls));
    let fallen = on_timer(&rules, account, sum_falls + DAY);
    assert_eq!(crossings(&fallen.outputs), [("busy".to_owned(), Direction::Down, sum_falls)]);
    assert_eq!(fallen.state.and_then(|account| account.next_timer_ms), None);

    // The protobuf form carries what the JSON form does.
    let output = &fallen.outputs[0];
    let message: crate::proto::v1::AccountOutput =
        prost::Message::decode(&output.to_protobuf()[..]).unwrap_or_else(|err| panic!("{err}"));
    let json: serde_json::Value = serde_json::from_slice(&output.to_json()).unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(
        (message.id.as_str(), message.account.as_str(), message.ts_ms),
        (output.id.as_str(), "acme.io", sum_falls)
    );
    let Some(crate::proto::v1::account_output::Body::AccountThresholdCrossed(crossed)) = message.body else {
        panic!("not a crossing: {:?}", message.body)
    };
    assert_eq!(crossed.direction, crate::proto::v1::Direction::Down as i32);
    assert_eq!(crossed.aggregate.map(|aggregate| aggregate.sum), json["sum"].as_f64());
    assert_eq!((json["threshold"].as_str(), json["direction"].as_str()), (Some("busy"), Some("down")));
}

#[test]
fn a_contact_leaving_takes_its_score_with_it_and_the_last_one_closes_the_account() {
    let rules = rules();
    let ana = contact(&rules, "ana", 1, true);
    let ben = contact(&rules, "ben", 2, false);
    let account = upsert(&rules, None, &ana, T0).state;
    let account = upsert(&rules, account, &ben, T0).state;
    let left = apply(&rules, account, "acme.io", MemberChange::Leave("ana".into()), T0 + DAY, "ana-left");
    let changed: Vec<(MemberMove, usize)> = left
        .outputs
        .iter()
        .filter_map(|output| match &output.body {
            AccountBody::AccountScoreChanged(change) => Some((change.change, change.aggregate.contacts)),
            AccountBody::AccountThresholdCrossed(_) => None,
        })
        .collect();
    assert_eq!(changed, [(MemberMove::Left, 1)]);
    let account = left.state.unwrap_or_else(|| panic!("no account"));
    let ben_alone =
        Member::of(&rules, &ben).score(&rules, rules.accounts.as_ref().unwrap_or_else(|| panic!()), T0 + DAY);
    assert_eq!(account.aggregate(&rules, T0 + DAY).sum, ben_alone);
    // Leaving twice, or reporting itself unchanged, changes nothing, not even the clock; the last
    // contact leaving closes the account.
    let later = T0 + 9 * DAY;
    let again = apply(&rules, Some(account.clone()), "acme.io", MemberChange::Leave("ana".into()), later, "x");
    assert_eq!((again.state, again.outputs.len()), (Some(account.clone()), 0));
    let same = upsert(&rules, Some(account.clone()), &ben, later);
    assert_eq!((same.state, same.outputs.len()), (Some(account.clone()), 0));
    let closed = apply(&rules, Some(account), "acme.io", MemberChange::Leave("ben".into()), T0 + DAY, "ben-left");
    assert_eq!(closed.state, None);
}

#[test]
fn a_contact_in_a_weighted_phase_counts_for_more() {
    let rules = rules();
    let mut ben = contact(&rules, "ben", 2, false);
    let account = upsert(&rules, None, &ben, T0).state;
    ben.phase = 1; // mql, weight 2
    let account = upsert(&rules, account, &ben, T0).state.unwrap_or_else(|| panic!("no account"));
    assert_eq!(account.aggregate(&rules, T0).sum, 100.0);
}

/// One contact's change in a random history: its new score and account, its erasure, or its merge into
/// another contact (which keeps its own account).
#[derive(Debug, Clone)]
enum Step {
    Scored { contact: usize, visits: usize, title: bool, account: usize, ts_ms: i64 },
    Erased { contact: usize, ts_ms: i64 },
    Merged { merged: usize, survivor: usize, ts_ms: i64 },
}

fn arb_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0..8usize, 1..4usize, any::<bool>(), 0..3usize, 0..(40 * DAY)).prop_map(
            |(contact, visits, title, account, at)| Step::Scored { contact, visits, title, account, ts_ms: T0 + at }
        ),
        1 => (0..8usize, 0..(40 * DAY)).prop_map(|(contact, at)| Step::Erased { contact, ts_ms: T0 + at }),
        1 => (0..8usize, 0..8usize, 0..(40 * DAY))
            .prop_map(|(merged, survivor, at)| Step::Merged { merged, survivor, ts_ms: T0 + at }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// However contacts change, move between accounts, are erased and merged, each account's aggregates,
    /// read at any time, equal those of the contacts that last named it, read from their own states.
    #[test]
    fn an_account_is_the_sum_of_the_contacts_that_last_named_it(steps in proptest::collection::vec(arb_step(), 1..40), later in 0..(60 * DAY)) {
        let rules = rules();
        let accounts_rules = rules.accounts.clone().unwrap_or_else(|| panic!("no [accounts]"));
        let mut contacts: BTreeMap<usize, (ContactState, usize)> = BTreeMap::new();
        let mut accounts: BTreeMap<usize, AccountState> = BTreeMap::new();
        let mut clock = T0;
        for (index, step) in steps.iter().enumerate() {
            let mut send = |account: usize, change: MemberChange, at: i64| {
                let applied = apply(&rules, accounts.remove(&account), &format!("account-{account}"), change, at, &format!("s{index}"));
                if let Some(state) = applied.state {
                    accounts.insert(account, state);
                }
            };
            match *step {
                Step::Scored { contact: who, visits, title, account, ts_ms } => {
                    let mut state = contact(&rules, &format!("c{who}"), visits, title);
                    state.clock_ms = ts_ms;
                    if let Some((_, old)) = contacts.get(&who).filter(|(_, old)| *old != account) {
                        send(*old, MemberChange::Leave(format!("c{who}")), ts_ms);
                    }
                    send(account, MemberChange::Upsert(Member::of(&rules, &state)), ts_ms);
                    contacts.insert(who, (state, account));
                    clock = clock.max(ts_ms);
                }
                Step::Erased { contact: who, ts_ms } => {
                    if let Some((_, account)) = contacts.remove(&who) {
                        send(account, MemberChange::Leave(format!("c{who}")), ts_ms);
                    }
                    clock = clock.max(ts_ms);
                }
                Step::Merged { merged, survivor, ts_ms } => {
                    if merged == survivor || !contacts.contains_key(&survivor) {
                        continue;
                    }
                    let Some((gone, left)) = contacts.remove(&merged) else { continue };
                    let Some((kept, account)) = contacts.remove(&survivor) else { continue };
                    // The runtime's order: the merged contact leaves from its partition, the survivor
                    // reports its merged state from its own.
                    send(left, MemberChange::Leave(format!("c{merged}")), ts_ms);
                    let merge = event(&format!("m{index}"), &kept.contact, "merge", ts_ms, &[]);
                    let state = crate::scoring::merge(&rules, Some(kept), gone, &crate::scoring::merge_event(&merge))
                        .state
                        .unwrap_or_else(|| panic!("a merge into a contact leaves it a state"));
                    send(account, MemberChange::Upsert(Member::of(&rules, &state)), ts_ms);
                    contacts.insert(survivor, (state, account));
                    clock = clock.max(ts_ms);
                }
            }
        }
        let at = clock + later;
        for account in 0..3usize {
            let members: Vec<f64> = contacts
                .values()
                .filter(|(_, named)| *named == account)
                .map(|(state, _)| Member::of(&rules, state).score(&rules, &accounts_rules, at))
                .collect();
            let aggregate = accounts.get(&account).map(|state| state.aggregate(&rules, at)).unwrap_or_default();
            prop_assert_eq!(aggregate.contacts, members.len());
            let sum: f64 = members.iter().sum();
            prop_assert!((aggregate.sum - sum).abs() <= 1e-9 * sum.abs().max(1.0), "{} vs {sum}", aggregate.sum);
            let max = members.iter().copied().fold(0.0f64, f64::max);
            prop_assert!(members.is_empty() || (aggregate.max - max).abs() <= 1e-9 * max.abs().max(1.0));
            // Each member's score equals its contact's own total: the account reads what the contact holds.
            for (state, _) in contacts.values().filter(|(_, named)| *named == account) {
                let own = state.total(&rules, at) * accounts_rules.phase_weights[state.phase];
                let seen = accounts.get(&account).and_then(|acc| acc.members.iter().find(|m| m.contact == state.contact));
                prop_assert_eq!(seen.map(|member| member.score(&rules, &accounts_rules, at)), Some(own));
            }
        }
    }
}

#[test]
fn the_accounts_table_is_checked_with_line_and_column() {
    let head = &RULES[..RULES.find("[accounts]").unwrap_or(RULES.len())];
    for (table, message) in [
        ("[accounts]\nscore = \"total\"\n", "needs `attribute`"),
        ("[accounts]\nattribute = \"account_id\"\nscore = \"intent\"\n", "no group \"intent\""),
        ("[accounts]\nattribute = \"account_id\"\ntop_k = 0\n", "top_k must be between"),
        ("[accounts]\nattribute = \"account_id\"\nphase_weights = { sql = 2 }\n", "unknown phase \"sql\""),
        ("[accounts]\nemail = \"email\"\nfree_mail = [\"a@b.c\"]\n", "free_mail lists domains"),
        ("[accounts]\nattribute = \"a\"\n[[accounts.thresholds]]\nname = \"x\"\n", "needs a condition"),
        ("[accounts]\nattribute = \"a\"\n[[accounts.thresholds]]\nname = \"x\"\ncontacts = 2\n", "`contacts_above`"),
        (
            "[accounts]\nattribute = \"a\"\n[[accounts.thresholds]]\nname = \"x\"\nsum = 1\nhysteresis = -1\n",
            "hysteresis",
        ),
        ("[accounts]\nattribute = \"a\"\n[[accounts.thresholds]]\nname = \"x\"\nmin_grade = \"E\"\n", "min_grade"),
    ] {
        let err =
            Rules::parse(&format!("{head}{table}"), Path::new("accounts.toml")).map(|_| ()).unwrap_err().to_string();
        let lines = head.lines().count();
        assert!(err.starts_with("accounts.toml:") && err.contains(message), "{err}");
        let line: usize = err.split(':').nth(1).and_then(|line| line.parse().ok()).unwrap_or(0);
        assert!(line == 1 || line > lines, "{err}: the line of the table (or 1 for the whole file)");
    }
}

/// The offline model keeps accounts in step with contacts through moves, merges and erasures: at the
/// end each account holds exactly the contacts whose state names it, each as that state says.
#[test]
fn the_model_keeps_accounts_in_step_with_their_contacts() {
    let rules = rules();
    let mut model = crate::offline::OfflineScorer::new(&rules, 3);
    let line = |id: &str, contact: &str, kind: &str, day: i64, attrs: &[(&str, &str)]| {
        crate::event::json::encode(&event(id, contact, kind, T0 + day * DAY, attrs))
    };
    let lines = [
        line("1", "ana", "page_visit", 0, &[("email", "ana@acme.io")]),
        line("2", "ben", "page_visit", 0, &[("account_id", "acme.io")]),
        line("3", "cy", "profile_update", 1, &[("email", "cy@globex.com")]),
        line("4", "dee", "page_visit", 1, &[("email", "dee@gmail.com")]),
        line("5", "ben", "page_visit", 2, &[("account_id", "globex.com")]),
        line("6", "ana", "page_visit", 3, &[]),
        line("7", "cy", "merge", 4, &[("merged", "dee")]),
        line("8", "eve", "profile_update", 4, &[("account_id", "initech")]),
        line("9", "eve", "erase", 5, &[]),
        line("10", "ana", "newsletter_open", 6, &[("account_id", "initech")]),
    ];
    let mut published = Vec::new();
    for line in &lines {
        model.score_line(line).unwrap_or_else(|err| panic!("{err}"));
        published.extend(model.take_account_outputs());
    }
    let at = T0 + 10 * DAY;
    let accounts_rules = rules.accounts.as_ref().unwrap_or_else(|| panic!("no [accounts]"));
    let mut expected: BTreeMap<String, Vec<(String, f64)>> = BTreeMap::new();
    for (contact, state) in model.store().contacts() {
        if let Some(account) = &state.account {
            let score = Member::of(&rules, state).score(&rules, accounts_rules, at);
            expected.entry(account.clone()).or_default().push((contact.clone(), score));
        }
    }
    let held: BTreeMap<String, Vec<(String, f64)>> = model
        .accounts()
        .accounts()
        .iter()
        .map(|(account, state)| {
            let members = state.members.iter().map(|m| (m.contact.clone(), m.score(&rules, accounts_rules, at)));
            (account.clone(), members.collect())
        })
        .collect();
    assert_eq!(held, expected);
    // ana moved to initech with an event no rule listens to; ben moved to globex; eve's account closed.
    let names: Vec<&str> = held.keys().map(String::as_str).collect();
    assert_eq!(names, ["globex.com", "initech"]);
    let left: Vec<(&str, &str)> = published
        .iter()
        .filter_map(|output| match &output.body {
            AccountBody::AccountScoreChanged(change) if change.change == MemberMove::Left => {
                Some((output.account.as_str(), change.contact.as_str()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(left, [("acme.io", "ben"), ("initech", "eve"), ("acme.io", "ana")]);
    let mut ids: Vec<&str> = published.iter().map(|output| output.id.as_str()).collect();
    ids.sort_unstable();
    let count = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), count, "output ids are unique");
}

#[test]
fn an_account_record_round_trips_and_reads_under_reordered_rules() {
    let rules = rules();
    let mut account = None;
    for state in [contact(&rules, "ana", 1, true), contact(&rules, "ben", 2, false), contact(&rules, "cy", 0, true)] {
        account = upsert(&rules, account, &state, T0).state;
    }
    let account = account.unwrap_or_else(|| panic!("no account"));
    assert_eq!(account.fired, [true, true]);
    let offsets = [
        codec::AppliedOrigin { origin: 7, offset: 41, index: 2 },
        codec::AppliedOrigin { origin: u32::MAX, offset: -1, index: 0 },
    ];
    let bytes = codec::encode(&rules, &account, &offsets);
    let (read, read_offsets) = codec::decode(&rules, "acme.io", &bytes).unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(read_offsets, offsets);
    assert_eq!(codec::encode(&rules, &read, &offsets), bytes);
    assert_eq!(
        (read.clock_ms, &read.fired, read.next_timer_ms),
        (account.clock_ms, &account.fired, account.next_timer_ms)
    );
    for at in [T0, T0 + 3 * DAY, T0 + 40 * DAY] {
        assert_eq!(read.aggregate(&rules, at), account.aggregate(&rules, at));
    }
    // Thresholds and groups found by their keys: the second threshold alone fired, the mqa removed.
    let mqa = RULES.find("[[accounts.thresholds]]\nname = \"mqa\"").unwrap_or(0);
    let busy = RULES.find("[[accounts.thresholds]]\nname = \"busy\"").unwrap_or(RULES.len());
    let reordered = Rules::parse(&[&RULES[..mqa], &RULES[busy..]].concat(), Path::new("fewer.toml"))
        .unwrap_or_else(|err| panic!("{err}"));
    let (fewer, _) = codec::decode(&reordered, "acme.io", &bytes).unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(fewer.fired, [true]);
    assert!(codec::decode(&rules, "acme.io", b"\xff\xff").is_err());
    let future = prost::Message::encode_to_vec(&crate::proto::v1::AccountState { format: 99, ..Default::default() });
    assert!(matches!(
        codec::decode(&rules, "acme.io", &future),
        Err(crate::scoring::codec::CodecError::UnknownFormat { found: 99 })
    ));
}

#[test]
fn a_level_is_reached_at_the_level_and_hysteresis_lowers_it_for_a_fired_threshold() {
    let rules = rules();
    let accounts = rules.accounts.as_ref().unwrap_or_else(|| panic!("no [accounts]"));
    let mqa = &accounts.thresholds[0];
    let standing = |scores: [f64; 3]| Standing { scores: scores.to_vec(), grades: vec![Some(Grade::A), None, None] };
    assert!(standing([40.0, 40.0, 40.0]).holds(mqa, 3, false), "40 is at least 40");
    assert!(!standing([40.0, 40.0, 39.999]).holds(mqa, 3, false));
    assert!(standing([30.0, 30.0, 30.0]).holds(mqa, 3, true), "a fired mqa holds down to 30");
    assert!(!standing([30.0, 30.0, 29.999]).holds(mqa, 3, true));
    let no_a = Standing { scores: vec![90.0; 3], grades: vec![Some(Grade::B); 3] };
    assert!(!no_a.holds(mqa, 3, false), "no contact of grade A");
}

/// An account whose sum dips below its down level between two of the doubling steps, and comes back: a
/// contact's engagement fades in days while another's complaints fade in weeks.
#[test]
fn an_account_falls_in_a_dip_that_the_doubling_steps_jump_over() {
    let accounts =
        "[accounts]\nattribute = \"account_id\"\n[[accounts.thresholds]]\nname = \"busy\"\nsum = 55\nhysteresis = 25\n";
    let text = [crate::scoring::DIPPING, accounts].concat();
    let rules = Rules::parse(&text, Path::new("dip.toml")).unwrap_or_else(|err| panic!("{err}"));
    let accounts = rules.accounts.as_ref().unwrap_or_else(|| panic!("no accounts"));
    let member = |contact: &str, values: [f64; 3]| Member {
        contact: contact.into(),
        phase: 0,
        groups: values.map(|value| GroupScore { value, since_ms: T0, contributions: Vec::new() }).to_vec(),
    };
    let account = AccountState {
        members: vec![member("ana", [40.0, 0.0, 0.0]), member("ben", [0.0, -30.0, 50.0])],
        fired: vec![true],
        ..AccountState::new(&rules, "acme", T0)
    };
    // 50 + 40·2^(−t/1d) − 30·2^(−t/10d): about 29.8 at day 4, below 30 from about day 3.5 to day 5.
    let below = |at: i64| account.aggregate(&rules, at).sum < 30.0;
    assert_eq!(first_time(T0, below), None, "the doubling steps jump over the dip");
    let fall = account.fall_time(&rules, accounts, &accounts.thresholds[0]).unwrap_or_else(|| panic!("missed"));
    assert!(below(fall) && !below(fall - 1), "{fall}");
    assert!(fall > T0 + 3 * DAY && fall < T0 + 5 * DAY, "{fall}");
    let account = AccountState { next_timer_ms: account.next_fall(&rules, accounts), ..account };
    assert_eq!(account.next_timer_ms, Some(fall));
    let fallen = on_timer(&rules, account, fall);
    assert_eq!(crossings(&fallen.outputs), [("busy".to_owned(), Direction::Down, fall)]);
}
