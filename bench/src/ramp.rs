//! The `ramp` scenario: `seed` traffic in steps of rising rate until a step fails (p99 above the
//! bound, a loss, a refusal or any error), reporting the highest total rate held.
//!
//! Each step is a complete `seed` run (fresh connections and channels), so its accounting is
//! exact; the guests are logged in once and their tokens reused by every step.

use crate::report::{BenchResult, RampReport, RampStep};
use crate::scenario::{Auth, ScenarioConfig, ScenarioKind, run};

/// Runs the ramp described by `config` (kind [`ScenarioKind::Ramp`]). The result is that of the
/// highest step held (the first step when none held), with every step in [`BenchResult::ramp`].
pub async fn run_ramp(config: &ScenarioConfig) -> Result<BenchResult, String> {
    config.validate()?;
    let bound_us = u64::try_from(config.p99_bound.as_micros()).unwrap_or(u64::MAX);
    let mut step_config = config.clone();
    step_config.kind = ScenarioKind::Seed;
    step_config.auth = Auth::Tokens(config.tokens().await?);
    let mut steps = Vec::new();
    let mut held: Option<BenchResult> = None;
    let mut first: Option<BenchResult> = None;
    for _ in 0..config.ramp_steps {
        if config.progress {
            eprintln!(
                "ramp: {:.0} msg/s ({} clients × {} msg/s)",
                step_config.rate * config.clients as f64,
                config.clients,
                step_config.rate
            );
        }
        let result = Box::pin(run(&step_config)).await?;
        let step = step_of(&result, bound_us);
        let ok = step.held;
        steps.push(step);
        if ok {
            held = Some(result);
        } else {
            first.get_or_insert(result);
            break;
        }
        step_config.rate *= config.ramp_factor;
    }
    let highest = held.as_ref().map(|r| r.config.rate * config.clients as f64);
    let mut result = match (held, first) {
        (Some(result), _) | (None, Some(result)) => result,
        (None, None) => return Err("--ramp-steps ran no step".into()),
    };
    result.config = config.clone();
    result.config.rate = steps
        .iter()
        .rev()
        .find(|s| s.held)
        .map_or(config.rate, |s| s.rate_per_client);
    result.ramp = Some(RampReport {
        p99_bound_us: bound_us,
        steps,
        highest_held_messages_per_second: highest,
    });
    Ok(result)
}

/// The summary line of one step.
fn step_of(result: &BenchResult, bound_us: u64) -> RampStep {
    RampStep {
        rate_per_client: result.config.rate,
        messages_per_second: result.config.rate * result.config.clients as f64,
        deliveries_per_second: result.deliveries_per_second,
        p99_us: result.latency_us.p99,
        lost: result.deliveries.lost,
        errors: result.errors.values().sum(),
        server_cpu_percent: result.server.iter().map(|s| s.cpu_percent).sum(),
        held: result.clean_within(bound_us) && result.clients_ready == result.config.clients as u64,
    }
}
