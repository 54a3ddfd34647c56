//! The store route behind a remote store (`crate::store::remote`): `GET /v1/store` says which
//! runner and protocol this is and whom the token stands for; `POST /v1/store/{op}` runs one
//! store call, its arguments a JSON array, and answers its value as JSON or `{"store_error":
//! …}` with the status the same error has on every other route.
//!
//! Each call needs a role (`role_for`), checked before anything is read. What a call says about
//! who acts and under which rule is the server's to decide, never the client's: the actor is
//! the token's name, the tag policy is the server's, a protected tag is displaced only as the
//! token's role allows (force is refused to a promote token), and no call may record a
//! promotion: a promotion's move goes through `POST /v1/promotions`, where the server runs the
//! gate itself.

use super::auth::Caller;
use super::error::ApiError;
use super::{ApiResult, Shared};
use crate::access::Access;
use crate::model::TagAction;
use crate::store::remote::{self, Failure, Hello};
use crate::store::{Store, StoreError, TagChange};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::Arc;
use std::time::Duration;

/// The body limit of one call: a batch of results with their messages, a whole import.
pub(super) const STORE_BODY_LIMIT: usize = 256 * 1024 * 1024;

/// What a call needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Needs {
    /// Prompt reads: any token, an application's ingest token too.
    PromptRead,
    /// Every other read.
    Read,
    /// Traces and feedback: ingest, or write.
    Ingest,
    Write,
    /// Whole-store writes that bypass the tag policy (import, a store copy's restores).
    Admin,
}

fn role_for(op: &str) -> Option<Needs> {
    if remote::PROMPT_READS.contains(&op) {
        return Some(Needs::PromptRead);
    }
    if remote::READS.contains(&op) {
        return Some(Needs::Read);
    }
    Some(match op {
        "write_spans" | "annotate" | "record_lookups" => Needs::Ingest,
        "create_prompt"
        | "append_version"
        | "set_tag"
        | "delete_tag"
        | "rollback_tag"
        | "update_prompt"
        | "archive_prompt"
        | "restore_prompt"
        | "create_experiment"
        | "finish_experiment"
        | "mark_mock"
        | "discard_experiment"
        | "reopen_experiment"
        | "take_lease"
        | "renew_lease"
        | "release_lease"
        | "write_results"
        | "plan_experiment"
        | "claim_items"
        | "renew_items"
        | "release_items"
        | "complete_items"
        | "finish_work"
        | "push_dataset"
        | "delete_dataset"
        | "create_task_experiment"
        | "record_task_run"
        | "record_task_evaluation"
        | "delete_task_experiment"
        | "start_rollout"
        | "record_look"
        | "finish_rollout" => Needs::Write,
        // An experiment or cache entries written as given are no more than a write token's
        // own runs write (an experiment merge writes them).
        "restore_experiment" | "restore_cache" => Needs::Write,
        "import"
        | "restore"
        | "restore_task_experiment"
        | "restore_task_runs"
        | "prune_traces"
        | "create_token"
        | "api_tokens"
        | "revoke_token"
        | "token_by_digest" => Needs::Admin,
        _ => return None,
    })
}

/// Whether `access` allows what a call needs; otherwise the role it would take.
fn allowed(access: Access, needs: Needs) -> Result<(), &'static str> {
    let ok = match needs {
        Needs::PromptRead => true,
        Needs::Read => access != Access::Ingest,
        Needs::Ingest => access != Access::ReadOnly,
        Needs::Write => matches!(
            access,
            Access::ReadWrite | Access::Promote | Access::Deploy | Access::Admin
        ),
        Needs::Admin => access == Access::Admin,
    };
    if ok {
        return Ok(());
    }
    Err(match needs {
        Needs::PromptRead | Needs::Read => "read",
        Needs::Ingest => "ingest",
        Needs::Write => "write",
        Needs::Admin => "admin",
    })
}

fn check_protocol(headers: &HeaderMap) -> ApiResult<()> {
    let asked = headers
        .get(remote::PROTOCOL_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim);
    match asked {
        Some(p) if p == remote::PROTOCOL.to_string() => Ok(()),
        Some(p) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "this is runner {} speaking store protocol {}; the client speaks {p}: use the same release on both ends",
                env!("CARGO_PKG_VERSION"),
                remote::PROTOCOL
            ),
        )),
        None => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("missing {} header", remote::PROTOCOL_HEADER),
        )),
    }
}

pub(super) async fn hello(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
) -> ApiResult {
    check_protocol(&headers)?;
    let schema = shared
        .with_store(|store| Ok(store.schema_version()?))
        .await?;
    Ok(Json(Hello {
        runner: env!("CARGO_PKG_VERSION").to_string(),
        protocol: remote::PROTOCOL,
        schema,
        actor: caller.actor.clone(),
        role: caller.access.role_name().to_string(),
    })
    .into_response())
}

/// A store error as the client reads it back.
fn failure(e: StoreError) -> Response {
    (
        super::error::status_of(&e),
        Json(Failure { store_error: e }),
    )
        .into_response()
}

fn forbidden(reason: String, needs: &str) -> Response {
    failure(StoreError::Forbidden {
        reason,
        needs: needs.to_string(),
    })
}

pub(super) async fn call(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Path(op): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(e) = check_protocol(&headers) {
        return e.into_response();
    }
    let Some(needs) = role_for(&op) else {
        return ApiError::not_found(format!("no store call '{op}'")).into_response();
    };
    if let Err(role) = allowed(caller.access, needs) {
        return forbidden(
            format!(
                "this {} token may not call {op}: it needs the {role} role",
                caller.access.role_name()
            ),
            role,
        );
    }
    let policy = shared.config.tag_policy();
    let answer = shared
        .with_store(move |store| {
            Ok(dispatch(
                store,
                &op,
                &body,
                &Rules {
                    caller: &caller,
                    policy,
                },
            ))
        })
        .await;
    match answer {
        Ok(Ok(json)) => (
            StatusCode::OK,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            json,
        )
            .into_response(),
        Ok(Err(Refusal::Store(e))) => failure(e),
        Ok(Err(Refusal::Forbidden(reason, needs))) => forbidden(reason, needs),
        Ok(Err(Refusal::BadCall(reason))) => ApiError::unprocessable(reason).into_response(),
        Err(e) => e.into_response(),
    }
}

enum Refusal {
    Store(StoreError),
    Forbidden(String, &'static str),
    BadCall(String),
}

impl From<StoreError> for Refusal {
    fn from(e: StoreError) -> Refusal {
        Refusal::Store(e)
    }
}

/// What the server decides for every call that writes.
struct Rules<'a> {
    caller: &'a Caller,
    policy: crate::store::TagPolicy,
}

impl Rules<'_> {
    /// The client's tag change under the server's rules: the token's name and role, the
    /// server's policy; force only where the role allows it, and never a promotion.
    fn change(&self, mut change: TagChange) -> Result<TagChange, Refusal> {
        if change.action == Some(TagAction::Promote) {
            return Err(Refusal::Forbidden(
                "a promotion's tag move is evaluated by the server: send it to POST /v1/promotions \
                 (`runner promote` does)"
                    .into(),
                "promote",
            ));
        }
        if change.force && self.caller.access == Access::Promote {
            return Err(Refusal::Forbidden(
                "a promote token moves a protected tag only through a promotion the server \
                 evaluates (`runner promote`); moving it by hand needs the deploy role"
                    .into(),
                "deploy",
            ));
        }
        change.actor = self.caller.actor.clone();
        change.role = self.caller.role;
        change.policy = self.policy.clone();
        change.evidence = None;
        Ok(change)
    }
}

fn args<A: DeserializeOwned>(op: &str, body: &[u8]) -> Result<A, Refusal> {
    serde_json::from_slice(body)
        .map_err(|e| Refusal::BadCall(format!("the arguments of {op} do not read: {e}")))
}

fn json<R: Serialize>(value: R) -> Result<Vec<u8>, Refusal> {
    serde_json::to_vec(&value).map_err(|e| {
        Refusal::Store(StoreError::Corrupt(format!(
            "cannot encode the answer: {e}"
        )))
    })
}

fn ms(value: u64) -> Duration {
    Duration::from_millis(value)
}

/// Runs one call. Every argument a client sends is read as the type the store takes, so a
/// malformed call is refused before the store is touched.
fn dispatch(
    store: &dyn Store,
    op: &str,
    body: &[u8],
    rules: &Rules<'_>,
) -> Result<Vec<u8>, Refusal> {
    use crate::model::*;
    use crate::store::*;
    let actor = || rules.caller.actor.clone();
    macro_rules! call {
        (|| $body:expr) => {{
            let (): () = args(op, body)?;
            json($body?)
        }};
        (|$($name:ident : $ty:ty),*| $body:expr) => {{
            #[allow(unused_parens)]
            let ($($name,)*): ($($ty,)*) = args(op, body)?;
            json($body?)
        }};
    }
    match op {
        "create_prompt" => call!(|name: String,
                                  version: NewVersion,
                                  tags: Vec<String>,
                                  change: TagChange| {
            let version = NewVersion {
                author: actor(),
                ..version
            };
            store.create_prompt(&name, version, &tags, &rules.change(change)?)
        }),
        "append_version" => call!(|name: String,
                                   seq: i64,
                                   version: NewVersion,
                                   tags: Vec<String>,
                                   change: TagChange| {
            let version = NewVersion {
                author: actor(),
                ..version
            };
            let change = rules.change(change)?;
            store.append_version_with(
                &name,
                &mut |latest| {
                    if latest.seq == seq {
                        Ok(version.clone())
                    } else {
                        Err(StoreError::Raced { name: name.clone() })
                    }
                },
                &tags,
                &change,
            )
        }),
        "version" => call!(|name: String, reference: VersionRef| store.version(&name, &reference)),
        "version_by_id" => call!(|id: String| store.version_by_id(&id)),
        "versions" => call!(|name: String| store.versions(&name)),
        "prompts_page" => call!(|from: Option<String>, limit: u64| {
            store.prompts_page(
                from.as_deref(),
                usize::try_from(limit).unwrap_or(usize::MAX),
            )
        }),
        "tags" => call!(|name: String| store.tags(&name)),
        "tag" => call!(|name: String, tag: String| store.tag(&name, &tag)),
        "tag_target" => call!(|name: String, tag: String| store.tag_target(&name, &tag)),
        "latest_target" => call!(|name: String| store.latest_target(&name)),
        "version_tags" => call!(|id: String| store.version_tags(&id)),
        "prompt_tags" => call!(|name: String| store.prompt_tags(&name)),
        "set_tag" => call!(
            |name: String, tag: String, target: VersionRef, change: TagChange| {
                store.set_tag(&name, &tag, &target, &rules.change(change)?)
            }
        ),
        "delete_tag" => call!(|name: String, tag: String, change: TagChange| {
            store.delete_tag(&name, &tag, &rules.change(change)?)
        }),
        "rollback_tag" => call!(|name: String, tag: String, change: TagChange| {
            store.rollback_tag(&name, &tag, &rules.change(change)?)
        }),
        "history" => {
            call!(|name: String, tag: Option<String>| store.history(&name, tag.as_deref()))
        }
        "archive" => call!(|name: String| store.archive(&name)),
        "import" => call!(|archives: Vec<PromptArchive>| store.import(&archives)),
        "restore" => call!(|archives: Vec<PromptArchive>| store.restore(&archives)),
        "prompt" => call!(|name: String| store.prompt(&name)),
        "update_prompt" => call!(|name: String, update: PromptUpdate, _actor: String| {
            store.update_prompt(&name, &update, &actor())
        }),
        "archive_prompt" => call!(|name: String, change: TagChange| {
            store.archive_prompt(&name, &rules.change(change)?)
        }),
        "restore_prompt" => {
            call!(|name: String, _actor: String| store.restore_prompt(&name, &actor()))
        }
        "archived_prompts" => call!(|| store.archived_prompts()),

        "create_experiment" => call!(|new: NewExperiment| {
            store.create_experiment(&NewExperiment {
                author: actor(),
                ..new
            })
        }),
        "experiment" => call!(|id: String| store.experiment(&id)),
        "experiments" => call!(|prompt: Option<String>| store.experiments(prompt.as_deref())),
        "matching" => call!(|fingerprint: String| store.matching(&fingerprint)),
        "visit_outcomes" => call!(|experiment: Experiment, cluster: Option<String>| {
            let mut all = Vec::new();
            store
                .visit_outcomes(&experiment, cluster.as_deref(), &mut |o| {
                    all.push(o);
                    Ok(())
                })
                .map(|()| all)
        }),
        "verdicts" => call!(|experiment: Experiment, cluster: Option<String>| {
            store.verdicts(&experiment, cluster.as_deref())
        }),
        "row_texts" => {
            call!(|experiment: Experiment, rows: Vec<String>| store.row_texts(&experiment, &rows))
        }
        "finish_experiment" => call!(|id: String, status: ExperimentStatus, wall_ms: i64| {
            store.finish_experiment(&id, status, wall_ms)
        }),
        "mark_mock" => call!(|id: String| store.mark_mock(&id)),
        "discard_experiment" => call!(|id: String| store.discard_experiment(&id)),
        "reopen_experiment" => call!(|id: String| store.reopen_experiment(&id)),
        "take_lease" => call!(|id: String, owner: String, ttl: u64, gone: Vec<String>| {
            store.take_lease(&id, &owner, ms(ttl), &|holder| {
                !gone.iter().any(|g| g == holder)
            })
        }),
        "renew_lease" => {
            call!(|id: String, owner: String, ttl: u64| store.renew_lease(&id, &owner, ms(ttl)))
        }
        "release_lease" => call!(|id: String, owner: String| store.release_lease(&id, &owner)),
        "visit_successes" => call!(|id: String| {
            let mut all = Vec::new();
            store
                .visit_successes(&id, &mut |row, repetition| all.push((row, repetition)))
                .map(|()| all)
        }),
        "summary" => {
            call!(|experiment: Experiment| store.summary(&experiment).map(remote::wire_summary))
        }
        "tokens" => call!(|id: String| store.tokens(&id)),
        "visit_results" => call!(|id: String| {
            let mut all = Vec::new();
            store
                .visit_results(&id, &mut |r| {
                    all.push(r);
                    Ok(())
                })
                .map(|()| all)
        }),
        "fingerprint" => call!(|id: String| store.fingerprint(&id)),
        "restore_experiment" => call!(|experiment: Experiment, fingerprint: Option<String>| {
            store.restore_experiment(&experiment, fingerprint.as_deref())
        }),
        "visit_cache" => call!(|| {
            let mut all = Vec::new();
            store
                .visit_cache(&mut |key, response, at| {
                    all.push((key.to_string(), response, at.to_string()));
                    Ok(())
                })
                .map(|()| all)
        }),
        "restore_cache" => {
            call!(|entries: Vec<(String, CachedResponse, String)>| store.restore_cache(&entries))
        }

        "plan_experiment" => call!(|new: NewExperiment,
                                    key: Option<String>,
                                    repetitions: i64,
                                    rows: Vec<PlanRow>| {
            let mut rows = rows.into_iter();
            store.plan_experiment(
                &NewExperiment {
                    author: actor(),
                    ..new
                },
                key.as_deref(),
                repetitions,
                &mut || Ok(rows.next()),
            )
        }),
        "claim_items" => call!(|id: String, owner: String, ttl: u64, max: u64| {
            store.claim_items(
                &id,
                &owner,
                ms(ttl),
                usize::try_from(max).unwrap_or(usize::MAX),
            )
        }),
        "renew_items" => {
            call!(|id: String, owner: String, ttl: u64| store.renew_items(&id, &owner, ms(ttl)))
        }
        "lease_owners" => call!(|id: String| store.lease_owners(&id)),
        "release_items" => call!(|id: String, owner: String| store.release_items(&id, &owner)),
        "complete_items" => call!(
            |id: String, owner: String, batch: Vec<remote::WireResult>| {
                store
                    .complete_items(&id, &owner, &remote::from_wire(batch))
                    .map(|n| n as u64)
            }
        ),
        "work_counts" => call!(|id: String| store.work_counts(&id)),
        "finish_work" => call!(|id: String| store.finish_work(&id)),
        "write_results" => call!(|id: String, batch: Vec<remote::WireResult>| {
            store.write_results(&id, &remote::from_wire(batch))
        }),
        "cached_response" => call!(|key: String| store.cached_response(&key)),

        "write_spans" => call!(
            |spans: Vec<crate::trace::Span>, annotations: Vec<crate::trace::Annotation>| {
                store.write_spans(&spans, &annotations)
            }
        ),
        "annotate" => {
            call!(|annotations: Vec<crate::trace::Annotation>| store.annotate(&annotations))
        }
        "record_lookups" => {
            call!(|counts: Vec<(crate::trace::LookupKey, i64)>| store.record_lookups(&counts))
        }
        "visit_spans" => call!(|filter: crate::trace::SpanFilter| {
            let mut all = Vec::new();
            store
                .visit_spans(&filter, &mut |s| {
                    all.push(s);
                    Ok(())
                })
                .map(|()| all)
        }),
        "span" => call!(|id: String| store.span(&id)),
        "scored_spans" => call!(|filter: crate::trace::SpanFilter| store.scored_spans(&filter)),
        "visit_annotations" => call!(|| {
            let mut all = Vec::new();
            store
                .visit_annotations(&mut |a| {
                    all.push(a);
                    Ok(())
                })
                .map(|()| all)
        }),
        "span_annotations" => call!(|span: crate::trace::Span| store.span_annotations(&span)),
        "count_spans" => call!(|filter: crate::trace::SpanFilter| store.count_spans(&filter)),
        "count_unlinked" => call!(|filter: crate::trace::SpanFilter| store.count_unlinked(&filter)),
        "lookups" => call!(|prompt: String, since: Option<i64>, until: Option<i64>| {
            store.lookups(&prompt, since, until)
        }),
        "prune_traces" => call!(|before: i64| store.prune_traces(before)),

        "start_rollout" => call!(|rollout: crate::canary::Rollout, change: TagChange| {
            store.start_rollout(
                &crate::canary::Rollout {
                    actor: actor(),
                    ..rollout
                },
                &rules.change(change)?,
            )
        }),
        "rollouts" => {
            call!(|prompt: Option<String>, running: bool| store.rollouts(prompt.as_deref(), running))
        }
        "rollout_now" => call!(|id: String| store.rollout_now(&id)),
        "record_look" => call!(
            |seen: crate::canary::Rollout, next: crate::canary::Rollout| {
                store.record_look(&seen, &next)
            }
        ),
        "finish_rollout" => call!(|seen: crate::canary::Rollout,
                                   status: crate::canary::Status,
                                   evidence: serde_json::Value,
                                   change: TagChange| {
            // Completing a rollout moves its tag as a promotion: the server's own evaluation
            // (its rollout routes, or its scheduler) does that; by hand it takes the deploy role.
            if status == crate::canary::Status::Completed && rules.caller.role != TagRole::Deploy {
                return Err(Refusal::Forbidden(
                    "completing a rollout moves its tag as a promotion: the server decides it \
                     (POST /v1/prompts/{prompt}/rollouts/{tag}/advance), or a deploy token"
                        .into(),
                    "deploy",
                ));
            }
            let mut change = rules.change(change)?;
            // The rollout's evidence is what the rollout's own tag events carry.
            change.evidence = None;
            store.finish_rollout(&seen, status, evidence, &change)
        }),

        "push_dataset" => call!(|name: String,
                                 must_be_new: bool,
                                 expected: Option<String>,
                                 made: Option<NewDatasetVersion>| {
            let made = made.map(|m| NewDatasetVersion {
                author: actor(),
                ..m
            });
            store.push_dataset_with(&name, must_be_new, &mut |latest| {
                if latest.map(|(v, _)| v.id.clone()) != expected {
                    return Err(StoreError::Raced { name: name.clone() });
                }
                Ok(made.clone())
            })
        }),
        "dataset_entries" => call!(|name: Option<String>, from: Option<String>, limit: u64| {
            store.dataset_entries(
                name.as_deref(),
                from.as_deref(),
                usize::try_from(limit).unwrap_or(usize::MAX),
            )
        }),
        "dataset_entry" => call!(|id: String| store.dataset_entry(&id)),
        "dataset_versions_of" => call!(|id: String, from: Option<i64>, limit: u64| {
            store.dataset_versions_of(&id, from, usize::try_from(limit).unwrap_or(usize::MAX))
        }),
        "dataset_version" => call!(|id: String| store.dataset_version(&id)),
        "delete_dataset" => call!(|id: String| store.delete_dataset(&id)),
        "datasets" => call!(|| store.datasets()),
        "dataset_versions" => call!(|name: String| store.dataset_versions(&name)),
        "dataset_content" => {
            call!(|name: String, seq: Option<i64>| store.dataset_content(&name, seq))
        }
        "dataset_by_hash" => call!(|hash: String| store.dataset_by_hash(&hash)),

        "create_task_experiment" => call!(|new: NewTaskExperiment, mirror: NewExperiment| {
            store.create_task_experiment(
                &NewTaskExperiment {
                    author: actor(),
                    ..new
                },
                &NewExperiment {
                    author: actor(),
                    ..mirror
                },
            )
        }),
        "task_experiment" => call!(|id: String| store.task_experiment(&id)),
        "task_experiments" => call!(|id: String, from: Option<String>, limit: u64| {
            store.task_experiments(
                &id,
                from.as_deref(),
                usize::try_from(limit).unwrap_or(usize::MAX),
            )
        }),
        "record_task_run" => call!(|run: TaskRun, result: Option<remote::WireResult>| {
            let result = result.map(|r| remote::from_wire(vec![r]).remove(0));
            store.record_task_run(&run, result.as_ref())
        }),
        "task_runs" => call!(|id: String, from: Option<String>, limit: Option<u64>| {
            store.task_runs(
                &id,
                from.as_deref(),
                limit.map(|l| usize::try_from(l).unwrap_or(usize::MAX)),
            )
        }),
        "task_run" => call!(|id: String| store.task_run(&id)),
        "record_task_evaluation" => call!(
            |evaluation: TaskEvaluation, score: Option<(i64, i64, Score)>| {
                store.record_task_evaluation(
                    &evaluation,
                    score.as_ref().map(|(r, p, s)| (*r, *p, s)),
                )
            }
        ),
        "task_evaluations" => call!(|id: String| store.task_evaluations(&id)),
        "delete_task_experiment" => call!(|id: String| store.delete_task_experiment(&id)),
        "restore_task_experiment" => {
            call!(|experiment: TaskExperiment| store.restore_task_experiment(&experiment))
        }
        "restore_task_runs" => call!(|runs: Vec<TaskRun>, evaluations: Vec<TaskEvaluation>| {
            store.restore_task_runs(&runs, &evaluations)
        }),
        "create_token" => call!(|new: NewToken| {
            store.create_token(&NewToken {
                created_by: actor(),
                ..new
            })
        }),
        "api_tokens" => call!(|| store.api_tokens()),
        "revoke_token" => call!(|name: String, _actor: String| store.revoke_token(&name, &actor())),
        "token_by_digest" => call!(|digest: String| store.token_by_digest(&digest)),
        other => Err(Refusal::BadCall(format!("no store call '{other}'"))),
    }
}
