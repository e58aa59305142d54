//! The `/v1` handlers: one contact with its explanation and its score over time, the leaderboard, and the
//! rules with their statistics and scorecard.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::error;
use crate::app::Instance;
use crate::event::format_rfc3339;
use crate::hashing::partition_for_key;
use crate::leaderboard::{self, MAX_LIMIT, Ranking};
use crate::rules::{Grade, Rules};
use crate::runtime::now_ms;
use crate::runtime::record::StoredContact;
use crate::scoring::{ContactState, ContactView, Series};

/// Contacts a leaderboard returns when no limit is given.
pub const DEFAULT_LIMIT: usize = 50;

/// `GET /v1/contacts/{id}`.
pub async fn contact(State(instance): State<Arc<Instance>>, id: Result<Path<String>, PathRejection>) -> Response {
    read_contact(instance, id, "", |rules, state| Json(ContactView::new(rules, state, now_ms())).into_response()).await
}

/// `GET /v1/contacts/{id}/series`: the contact's score over time, for charts.
pub async fn series(State(instance): State<Arc<Instance>>, id: Result<Path<String>, PathRejection>) -> Response {
    read_contact(instance, id, "/series", |rules, state| Json(Series::new(rules, state, now_ms())).into_response())
        .await
}

/// Reads the contact named in the path from the partition that holds it, and answers with `show` of it;
/// a contact merged into another is redirected, for good, to the same path (`suffix`) of that contact.
async fn read_contact(
    instance: Arc<Instance>,
    id: Result<Path<String>, PathRejection>,
    suffix: &'static str,
    show: fn(&Rules, &ContactState) -> Response,
) -> Response {
    let (id, partition) = match owned_key(&instance, id, "contact") {
        Ok(found) => found,
        Err((status, message)) => return error(status, message),
    };
    let store = instance.store.clone();
    let rules = instance.rules.get();
    let lookup = tokio::task::spawn_blocking(move || {
        let bytes = store.get(partition, &id).map_err(|err| err.to_string())?;
        let Some(bytes) = bytes else {
            return Ok(None);
        };
        let stored = StoredContact::decode(&rules, &id, &bytes).map_err(|err| err.to_string())?;
        if let Some(survivor) = stored.merged_into {
            let location = format!("/v1/contacts/{}{suffix}", percent_encoded(&survivor));
            let response = (StatusCode::PERMANENT_REDIRECT, [(axum::http::header::LOCATION, location)]);
            return Ok(Some(response.into_response()));
        }
        Ok::<_, String>(stored.state.map(|state| show(&rules, &state)))
    })
    .await;
    match lookup {
        Ok(Ok(Some(response))) => response,
        Ok(Ok(None)) => error(StatusCode::NOT_FOUND, "unknown contact"),
        Ok(Err(reason)) => error(StatusCode::INTERNAL_SERVER_ERROR, reason),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "lookup failed"),
    }
}

/// The id in a path (of a contact or an account: `what`) and its partition, if the id is valid and this
/// instance owns the partition and has restored it; else the status and message that say why not.
pub(super) fn owned_key(
    instance: &Instance,
    id: Result<Path<String>, PathRejection>,
    what: &str,
) -> Result<(String, i32), (StatusCode, String)> {
    let id = match id {
        Ok(Path(id)) if !id.is_empty() && id.len() <= crate::event::MAX_FIELD_BYTES => id,
        _ => return Err((StatusCode::BAD_REQUEST, format!("invalid {what} id"))),
    };
    let partition = partition_for_key(id.as_bytes(), instance.partitions) as i32;
    if instance.status.is_restoring(partition) {
        return Err((StatusCode::SERVICE_UNAVAILABLE, format!("partition {partition} is restoring; retry shortly")));
    }
    if !instance.status.owns(partition) {
        let message = format!("partition {partition} is not owned by this instance; ask the instance that owns it");
        return Err((StatusCode::MISDIRECTED_REQUEST, message));
    }
    Ok((id, partition))
}

/// A contact id as one path segment: everything but RFC 3986's unreserved characters percent-encoded.
fn percent_encoded(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for byte in id.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Query of `GET /v1/leaderboard`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaderboardQuery {
    /// Group to rank by; the weighted total if absent.
    group: Option<String>,
    /// Most contacts returned.
    limit: Option<usize>,
    /// Only contacts in this phase.
    phase: Option<String>,
    /// Only contacts with this fit grade, among the top [`MAX_LIMIT`] of the ranking.
    grade: Option<String>,
}

/// One leaderboard row.
#[derive(Debug, Serialize)]
struct Row {
    rank: usize,
    contact: String,
    score: f64,
    phase: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    grade: Option<&'static str>,
}

/// `GET /v1/leaderboard`: the top contacts of the partitions this instance owns, decayed to now.
pub async fn leaderboard(
    State(instance): State<Arc<Instance>>,
    query: Result<Query<LeaderboardQuery>, QueryRejection>,
) -> Response {
    let Query(query) = match query {
        Ok(query) => query,
        Err(rejection) => return error(StatusCode::BAD_REQUEST, rejection.body_text()),
    };
    let rules = &instance.rules.get();
    let ranking = match query.group.as_deref() {
        None | Some("total") => Ranking::Total,
        Some(name) => match rules.group_index(name) {
            Some(group) => Ranking::Group(group),
            None => return error(StatusCode::BAD_REQUEST, format!("unknown group {name:?}")),
        },
    };
    let phase = match query.phase.as_deref() {
        None => None,
        Some(name) => match rules.phase_index(name) {
            Some(phase) => Some(phase),
            None => return error(StatusCode::BAD_REQUEST, format!("unknown phase {name:?}")),
        },
    };
    let grade = match query.grade.as_deref() {
        None => None,
        Some(letter) => match (Grade::from_letter(letter), rules.grades) {
            (Some(grade), Some(_)) => Some(grade),
            (None, _) => return error(StatusCode::BAD_REQUEST, format!("unknown grade {letter:?}: A, B, C or D")),
            (Some(_), None) => return error(StatusCode::BAD_REQUEST, "the rules define no grades"),
        },
    };
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return error(StatusCode::BAD_REQUEST, format!("limit must be between 1 and {MAX_LIMIT}"));
    }
    let now = now_ms();
    let instance_for_query = instance.clone();
    // A grade is not an index of its own: the top of the ranking is read as far as the limit allows and
    // filtered.
    let wanted = if grade.is_some() { MAX_LIMIT } else { limit };
    let top = tokio::task::spawn_blocking(move || {
        let rules = instance_for_query.rules.get();
        let query = leaderboard::Query { ranking, phase, limit: wanted };
        instance_for_query.insights.leaderboard.top(&rules, query, now)
    })
    .await;
    let top = match top {
        Ok(Ok(top)) => top,
        Ok(Err(err)) => return error(StatusCode::INTERNAL_SERVER_ERROR, format!("leaderboard: {err}")),
        Err(err) => return error(StatusCode::INTERNAL_SERVER_ERROR, format!("leaderboard query failed: {err}")),
    };
    let rows: Vec<Row> = top
        .into_iter()
        .filter(|ranked| grade.is_none() || ranked.grade == grade)
        .take(limit)
        .enumerate()
        .map(|(position, ranked)| Row {
            rank: position + 1,
            contact: ranked.contact,
            score: ranked.score,
            phase: rules.phases.get(ranked.phase).map_or_else(String::new, |phase| phase.name.clone()),
            grade: ranked.grade.map(Grade::letter),
        })
        .collect();
    let restoring: Vec<i32> =
        instance.status.owned().into_iter().filter(|partition| instance.status.is_restoring(*partition)).collect();
    Json(json!({
        "ranking": match ranking {
            Ranking::Group(group) => rules.groups[group].name.clone(),
            Ranking::Total => "total".to_owned(),
        },
        "phase": query.phase,
        "grade": grade.map(Grade::letter),
        "at": format_rfc3339(now),
        "partitions": instance.status.owned(),
        "restoring": restoring,
        "contacts": rows,
    }))
    .into_response()
}

/// `GET /v1/rules`: the active rules and what each rule did on this instance's partitions.
pub async fn rules(State(instance): State<Arc<Instance>>) -> Response {
    let rules = &instance.rules.get();
    let (by_rule, by_phase) = instance.insights.rule_stats.report(rules);
    Json(json!({
        "version": rules.version,
        "name": rules.name,
        "groups": rules.groups.iter().map(|group| &group.name).collect::<Vec<_>>(),
        "rules": by_rule,
        "thresholds": rules.thresholds.iter().map(|threshold| &threshold.name).collect::<Vec<_>>(),
        "phases": rules.phases.iter().map(|phase| &phase.name).collect::<Vec<_>>(),
        "conversions": by_phase,
        "partitions": instance.status.owned(),
        "loaded_at": format_rfc3339(instance.rules.loaded_at_ms()),
        "scorecard": scorecard(rules),
    }))
    .into_response()
}

/// The scorecard's shape, for people reading it: groups with their range, weight and decay, thresholds with
/// their levels, phases with the groups they reset, and the grades.
fn scorecard(rules: &Rules) -> serde_json::Value {
    let group_name = |index: usize| rules.groups.get(index).map(|group| group.name.clone());
    json!({
        "groups": rules.groups.iter().map(|group| json!({
            "name": group.name,
            "min": group.min,
            "max": group.max,
            "weight": group.weight,
            "decay": group.decay.to_string(),
        })).collect::<Vec<_>>(),
        "thresholds": rules.thresholds.iter().map(|threshold| json!({
            "name": threshold.name,
            "target": rules.target_name(threshold.target),
            "at": threshold.at,
            "down": threshold.down_level(),
            "advance_to": threshold.advance_to.and_then(|phase| rules.phases.get(phase)).map(|phase| &phase.name),
        })).collect::<Vec<_>>(),
        "phases": rules.phases.iter().map(|phase| json!({
            "name": phase.name,
            "resets": phase.resets.iter().filter_map(|group| group_name(*group)).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "grades": rules.grades.map(|grades| json!({
            "group": group_name(grades.group),
            "a": grades.a,
            "b": grades.b,
            "c": grades.c,
        })),
    })
}
