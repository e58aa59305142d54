//! A scenario of account scoring across partitions, run on the mock cluster and on Apache Kafka.

use std::collections::BTreeMap;

use leadscore::accounts::AccountState;
use leadscore::config::Config;
use leadscore::event::{AttrValue, Event};
use leadscore::offline::OfflineScorer;

use super::*;

const DAY: i64 = 86_400_000;

/// Contacts of four accounts, spread over the partitions, report their changes (visits, a move, an
/// erasure, a merge) through the internal account topic to the partitions that own their accounts: the
/// published account outputs and the final accounts (restored from the changelog into an empty state
/// directory) equal the offline model's, and the API shows and ranks them. Each phase sends each account
/// at most one change, so that the order in which changes from different partitions meet is the model's.
pub fn scenario(bootstrap: &str, names: &Names, mut config: Config, partitions: u32) {
    let rules = leadscore::app::load_rules(&config).unwrap_or_else(|err| panic!("{err}"));

    let t0 = 1_772_366_400_000;
    let accounts = ["acme", "globex", "initech", "umbrella"];
    let visit = |id: String, contact: String, account: Option<&str>, ts_ms: i64| Event {
        id,
        contact,
        kind: "page_visit".into(),
        ts_ms,
        item: Some("/pricing".into()),
        attrs: account.map(|account| ("account_id".to_owned(), AttrValue::Text(account.into()))).into_iter().collect(),
        adjustment: None,
        phase: None,
    };
    // Three rounds, a day apart: each account's next contact joins, and the third one makes it engaged.
    let mut phases: Vec<Vec<Event>> = (0..3)
        .map(|round| {
            accounts
                .iter()
                .map(|account| {
                    let contact = format!("{account}-{round}");
                    visit(format!("{contact}-visit"), contact, Some(account), t0 + round * DAY)
                })
                .collect()
        })
        .collect();
    // A contact moves to another account (one record: the leave and the join go out in order), one is
    // erased, and one visits again without naming its account, which it keeps.
    phases.push(vec![visit("acme-0-moves".into(), "acme-0".into(), Some("globex"), t0 + 3 * DAY)]);
    let erase = Event {
        kind: "erase".into(),
        item: None,
        ..visit("initech-1-erase".into(), "initech-1".into(), None, t0 + 4 * DAY)
    };
    phases.push(vec![erase]);
    phases.push(vec![visit("umbrella-1-again".into(), "umbrella-1".into(), None, t0 + 5 * DAY)]);
    // A merge across accounts: acme-1 leaves acme from its own partition, and its state joins umbrella-0's,
    // which stays in umbrella.
    let merge = Event {
        kind: "merge".into(),
        item: None,
        attrs: vec![("merged".into(), AttrValue::Text("acme-1".into()))],
        ..visit("umbrella-0-merges".into(), "umbrella-0".into(), None, t0 + 6 * DAY)
    };
    phases.push(vec![merge]);
    // Months later the sums have decayed below the hysteresis: the thresholds fall at their millisecond,
    // before the late visits count.
    phases.push(
        accounts
            .iter()
            .map(|account| {
                let contact = format!("{account}-2");
                visit(format!("{contact}-late"), contact, Some(account), t0 + 120 * DAY)
            })
            .collect(),
    );

    let db = config.state.dir.clone();
    let port = free_port();
    config.http.listen = ([127, 0, 0, 1], port).into();
    let instance = InProcess::start(&config, partitions);
    for phase in &phases {
        merges::score_phase(bootstrap, names, phase, partitions);
    }
    // The API shows an account with its contacts, and ranks the accounts.
    let body = http_get(port, "/v1/accounts/globex").unwrap_or_else(|| panic!("no answer for globex"));
    let globex: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|err| panic!("{err}: {body}"));
    let contacts: Vec<&str> =
        globex["contacts"].as_array().into_iter().flatten().filter_map(|c| c["contact"].as_str()).collect();
    assert_eq!(contacts.len(), 4, "{body}");
    assert!(contacts.contains(&"acme-0"), "{body}");
    assert_eq!(globex["aggregate"]["contacts"], 4, "{body}");
    let body = http_get(port, "/v1/accounts?by=contacts&limit=2").unwrap_or_else(|| panic!("no ranking"));
    let ranking: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|err| panic!("{err}: {body}"));
    assert_eq!(ranking["accounts"][0]["account"], "globex", "{body}");
    assert_eq!(ranking["accounts"].as_array().map(Vec::len), Some(2), "{body}");
    assert_eq!(http_get_status(port, "/v1/accounts/nobody").map(|(status, _)| status), Some(404));
    instance.stop();
    // The accounts come back from the changelog into an empty state directory.
    std::fs::remove_dir_all(&db).unwrap_or_else(|err| panic!("{err}"));
    InProcess::start(&config, partitions).stop();

    let mut model = OfflineScorer::new(&rules, partitions);
    let mut expected = BTreeMap::new();
    for event in phases.concat() {
        model.score_line(&leadscore::event::json::encode(&event)).unwrap_or_else(|err| panic!("{err}"));
        for output in model.take_account_outputs() {
            let json: serde_json::Value =
                serde_json::from_slice(&output.to_json()).unwrap_or_else(|err| panic!("{err}"));
            assert!(expected.insert(output.id.clone(), json).is_none(), "the model produced {} twice", output.id);
        }
    }
    let mut published = BTreeMap::new();
    for (_, _, payload, _) in read_all(bootstrap, &[&names.accounts], Duration::from_secs(2)) {
        let json: serde_json::Value =
            serde_json::from_slice(&payload.unwrap_or_default()).unwrap_or_else(|err| panic!("{err}"));
        let id = json["id"].as_str().unwrap_or_default().to_owned();
        assert!(published.insert(id.clone(), json).is_none(), "{id} was published twice");
    }
    assert_eq!(published, expected);
    let crossings = |direction: &str| {
        expected
            .values()
            .filter(|output| output["type"] == "account_threshold_crossed" && output["direction"] == direction)
            .count()
    };
    assert_eq!((crossings("up"), crossings("down")), (4, 4), "each account engaged, and fell months later");

    // The final accounts, restored: the same members and fired thresholds, read from the state directory.
    let stored = stored_accounts_of(&rules, &db, None);
    assert_eq!(stored.keys().collect::<Vec<_>>(), model.accounts().accounts().keys().collect::<Vec<_>>());
    for (account, modelled) in model.accounts().accounts() {
        let stored = &stored[account];
        assert_eq!((&stored.members, &stored.fired), (&modelled.members, &modelled.fired), "{account}");
    }
    let members = |account: &str| model.accounts().accounts().get(account).map_or(0, |state| state.members.len());
    assert_eq!(accounts.map(members), [1, 4, 2, 3], "acme-0 moved to globex, initech-1 was erased, acme-1 merged");
    assert!(expected.contains_key("umbrella-0-merges:merge:umbrella-0:umbrella:0"), "{:?}", expected.keys());
}

/// The account records of `only` partitions (all when `None`) in a state directory, by account.
pub fn stored_accounts_of(rules: &Rules, dir: &Path, only: Option<&[i32]>) -> BTreeMap<String, AccountState> {
    let mut accounts = BTreeMap::new();
    for_each_stored(dir, only, true, |account, bytes| {
        let (state, _) =
            leadscore::accounts::codec::decode(rules, account, bytes).unwrap_or_else(|err| panic!("{err}"));
        accounts.insert(account.to_owned(), state);
    });
    accounts
}
