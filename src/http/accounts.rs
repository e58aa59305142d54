//! `GET /v1/accounts/{id}` (one account: its aggregates, its contacts with what each contributes, and its
//! thresholds) and `GET /v1/accounts` (the accounts of this instance's partitions ranked by an aggregate),
//! both decayed to now.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::api::owned_key;
use super::error;
use crate::accounts::{AccountState, Aggregate, codec};
use crate::app::Instance;
use crate::event::format_rfc3339;
use crate::leaderboard::MAX_LIMIT;
use crate::rules::{Grade, Rules};
use crate::runtime::now_ms;
use crate::runtime::task::account_key;

/// One contact of an account, as the account counts it now.
#[derive(Debug, Serialize)]
struct MemberView<'a> {
    contact: &'a str,
    phase: &'a str,
    /// Its weighted score: the account's score target times its phase's weight.
    score: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    grade: Option<&'static str>,
}

/// `GET /v1/accounts/{id}`.
pub async fn account(State(instance): State<Arc<Instance>>, id: Result<Path<String>, PathRejection>) -> Response {
    let (id, partition) = match owned_key(&instance, id, "account") {
        Ok(found) => found,
        Err((status, message)) => return error(status, message),
    };
    let store = instance.store.clone();
    let rules = instance.rules.get();
    let lookup = tokio::task::spawn_blocking(move || {
        let Some(bytes) = store.get(partition, &account_key(&id)).map_err(|err| err.to_string())? else {
            return Ok(None);
        };
        let (state, _) = codec::decode(&rules, &id, &bytes).map_err(|err| err.to_string())?;
        Ok::<_, String>((!state.members.is_empty()).then(|| Json(view(&rules, &state, now_ms())).into_response()))
    })
    .await;
    match lookup {
        Ok(Ok(Some(response))) => response,
        Ok(Ok(None)) => error(StatusCode::NOT_FOUND, "unknown account"),
        Ok(Err(reason)) => error(StatusCode::INTERNAL_SERVER_ERROR, reason),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "lookup failed"),
    }
}

/// An account at `at_ms`: its aggregates, its contacts best first, and its thresholds.
fn view(rules: &Rules, state: &AccountState, at_ms: i64) -> serde_json::Value {
    let Some(accounts) = &rules.accounts else {
        return json!({ "account": state.account });
    };
    let mut members: Vec<MemberView> = state
        .members
        .iter()
        .map(|member| MemberView {
            contact: &member.contact,
            phase: rules.phases.get(member.phase).map_or("", |phase| phase.name.as_str()),
            score: member.score(rules, accounts, at_ms),
            grade: member.grade(rules, at_ms).map(Grade::letter),
        })
        .collect();
    members.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.contact.cmp(b.contact)));
    let thresholds: Vec<serde_json::Value> = accounts
        .thresholds
        .iter()
        .zip(&state.fired)
        .map(|(threshold, fired)| json!({ "name": threshold.name, "fired": fired }))
        .collect();
    json!({
        "account": state.account,
        "at": format_rfc3339(at_ms),
        "aggregate": state.aggregate(rules, at_ms),
        "top_k": accounts.top_k,
        "contacts": members,
        "thresholds": thresholds,
        "next_timer": state.next_timer_ms.map(format_rfc3339),
    })
}

/// Query of `GET /v1/accounts`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountsQuery {
    /// The aggregate to rank by: `sum` (the default), `max`, `top_k_sum` or `contacts`.
    by: Option<String>,
    /// Most accounts returned.
    limit: Option<usize>,
}

/// `GET /v1/accounts`: the accounts of the partitions this instance owns, ranked by an aggregate now.
pub async fn ranking(
    State(instance): State<Arc<Instance>>,
    query: Result<Query<AccountsQuery>, QueryRejection>,
) -> Response {
    let Query(query) = match query {
        Ok(query) => query,
        Err(rejection) => return error(StatusCode::BAD_REQUEST, rejection.body_text()),
    };
    let by = query.by.unwrap_or_else(|| "sum".to_owned());
    let key: fn(&Aggregate) -> f64 = match by.as_str() {
        "sum" => |aggregate| aggregate.sum,
        "max" => |aggregate| aggregate.max,
        "top_k_sum" => |aggregate| aggregate.top_k_sum,
        "contacts" => |aggregate| aggregate.contacts as f64,
        other => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("unknown aggregate {other:?}: sum, max, top_k_sum or contacts"),
            );
        }
    };
    let limit = query.limit.unwrap_or(super::DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return error(StatusCode::BAD_REQUEST, format!("limit must be between 1 and {MAX_LIMIT}"));
    }
    let now = now_ms();
    let partitions: Vec<i32> =
        instance.status.owned().into_iter().filter(|partition| !instance.status.is_restoring(*partition)).collect();
    let reader = instance.clone();
    let read = tokio::task::spawn_blocking(move || {
        let rules = reader.rules.get();
        let mut ranked: Vec<(String, Aggregate)> = Vec::new();
        let mut failure = None;
        for partition in &partitions {
            reader.store.for_each_account(
                *partition,
                &mut |account, bytes| match codec::decode(&rules, account, bytes) {
                    Ok((state, _)) => {
                        if !state.members.is_empty() {
                            ranked.push((account.to_owned(), state.aggregate(&rules, now)));
                        }
                        true
                    }
                    Err(err) => {
                        failure = Some(format!("account {account:?} cannot be read: {err}"));
                        false
                    }
                },
            )?;
        }
        Ok::<_, crate::store::StoreError>(failure.map_or(Ok(ranked), Err))
    })
    .await;
    let mut ranked = match read {
        Ok(Ok(Ok(ranked))) => ranked,
        Ok(Ok(Err(reason))) => return error(StatusCode::INTERNAL_SERVER_ERROR, reason),
        Ok(Err(err)) => return error(StatusCode::INTERNAL_SERVER_ERROR, err.to_string()),
        Err(_) => return error(StatusCode::INTERNAL_SERVER_ERROR, "ranking failed"),
    };
    ranked.sort_by(|a, b| key(&b.1).total_cmp(&key(&a.1)).then_with(|| a.0.cmp(&b.0)));
    let rows: Vec<serde_json::Value> = ranked
        .into_iter()
        .take(limit)
        .enumerate()
        .map(|(position, (account, aggregate))| json!({ "rank": position + 1, "account": account, "aggregate": aggregate }))
        .collect();
    let restoring: Vec<i32> =
        instance.status.owned().into_iter().filter(|partition| instance.status.is_restoring(*partition)).collect();
    Json(json!({
        "by": by,
        "at": format_rfc3339(now),
        "partitions": instance.status.owned(),
        "restoring": restoring,
        "accounts": rows,
    }))
    .into_response()
}
