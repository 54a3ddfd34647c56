//! `POST /v1/promotions`: the promotion gate evaluated by the server. The request names the
//! two experiments that are the evidence and the criteria (`store::remote::PromotionCall`); the
//! server reads the experiments from its own store, runs the gate with the same code
//! `runner promote` runs (`workflow::promotion`), and moves the tag only if it passes, recording
//! the evidence. Its own runner.toml `[gate]` is a floor: a request may ask for more, never
//! for less. A client sends no verdict, so a token that may promote moves a protected tag only
//! through a gate that passed here.

use super::auth::Caller;
use super::error::ApiError;
use super::{ApiResult, Shared};
use crate::gate::Policy;
use crate::model::VersionRef;
use crate::store::remote::{PromotionAnswer, PromotionCall};
use crate::workflow::promotion::{self, Acceptance, Chosen, EvidenceFrom, PromotionRequest};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use std::sync::Arc;

/// The stricter of two values of a criterion, each possibly unset.
fn stricter(a: Option<f64>, b: Option<f64>, higher_is_stricter: bool) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if higher_is_stricter {
            a.max(b)
        } else {
            a.min(b)
        }),
        (a, b) => a.or(b),
    }
}

/// The request's policy raised to the server's `[gate]` for the prompt.
fn with_floor(asked: Policy, floor: Option<&crate::config::GateConfig>) -> Policy {
    let Some(floor) = floor else {
        return asked;
    };
    Policy {
        min_pass_rate: stricter(asked.min_pass_rate, floor.min_pass_rate, true),
        max_regression: stricter(asked.max_regression, floor.max_regression, false),
        no_new_failures: asked.no_new_failures || floor.no_new_failures.unwrap_or(false),
        max_error_rate: stricter(asked.max_error_rate, floor.max_error_rate, false),
        max_p95_latency_ms: stricter(asked.max_p95_latency_ms, floor.max_p95_latency_ms, false),
        non_inferior: stricter(asked.non_inferior, floor.non_inferior, false),
        min_improvement: stricter(asked.min_improvement, floor.min_improvement, true),
        max_cost_increase: stricter(asked.max_cost_increase, floor.max_cost_increase, false),
    }
}

pub(super) async fn promote(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> ApiResult {
    if !caller.access.writes() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "this {} token may not promote: it needs the promote role (or write, deploy, admin)",
                caller.access.role_name()
            ),
        ));
    }
    let call: PromotionCall = serde_json::from_slice(&body)
        .map_err(|e| ApiError::unprocessable(format!("not a promotion request: {e}")))?;
    for name in [&call.from, &call.to] {
        crate::model::check_name(crate::model::NameKind::Tag, name)
            .map_err(|reason| ApiError::unprocessable(format!("tag '{name}': {reason}")))?;
    }
    crate::model::check_name(crate::model::NameKind::Prompt, &call.prompt)
        .map_err(|reason| ApiError::unprocessable(format!("prompt '{}': {reason}", call.prompt)))?;
    if call.from == call.to {
        return Err(ApiError::unprocessable("from and to name the same tag"));
    }
    if !(call.confidence > 0.0 && call.confidence < 1.0) {
        return Err(ApiError::unprocessable(
            "confidence must be between 0 and 1 (0.95, say)",
        ));
    }
    let store = Arc::clone(&shared.store);
    let config = shared.config.clone();
    let answer = tokio::task::spawn_blocking(move || -> ApiResult<PromotionAnswer> {
        let floor = config.for_prompt(&call.prompt).gate;
        let policy = with_floor(call.policy.clone(), floor.as_ref());
        if !(policy.has_absolute() || policy.has_relative()) {
            return Err(ApiError::unprocessable(
                "the promotion names no criterion: a gate needs at least one \
                 (min_pass_rate, max_regression, no_new_failures, …)",
            ));
        }
        let ctx = crate::workflow::Context::with_store(Arc::clone(&store), &caller.actor, config);
        let candidate_version = store.version(&call.prompt, &VersionRef::Tag(call.from.clone()))?;
        let baseline_version = store.tag(&call.prompt, &call.to)?;
        let request = PromotionRequest {
            evidence: EvidenceFrom::Chosen(Chosen {
                candidate: call.candidate_experiment.clone(),
                baseline: call.baseline_experiment.clone(),
            }),
            prompt: &call.prompt,
            from: &call.from,
            to: &call.to,
            acceptance: Acceptance {
                max_error_rate: policy.error_allowance(),
                same_endpoint: call.same_endpoint,
            },
            policy: policy.clone(),
            inference: crate::compare::Inference {
                confidence: call.confidence,
                cluster_column: call.cluster_column.clone(),
            },
            dry_run: call.dry_run,
            message: call.message.clone(),
            pairwise: None,
        };
        let decided = promotion::promote(
            &ctx,
            &request,
            candidate_version,
            baseline_version,
            &crate::engine::Silent,
            std::future::pending::<()>,
        )?;
        tracing::info!(
            prompt = %call.prompt,
            to = %call.to,
            passed = decided.verdict.passed,
            moved = decided.moved.is_some(),
            actor = %caller.actor,
            "promotion evaluated"
        );
        Ok(PromotionAnswer {
            passed: decided.verdict.passed,
            moved: decided.moved,
            criteria: decided
                .verdict
                .criteria
                .iter()
                .filter_map(|c| serde_json::to_value(c).ok())
                .collect(),
            notes: decided.verdict.notes.clone(),
            policy,
        })
    })
    .await
    .map_err(|e| ApiError::internal(format!("request worker failed: {e}")))??;
    Ok(Json(answer).into_response())
}
