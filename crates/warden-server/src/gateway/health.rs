//! Health probes of every deployment's upstreams (`[gateway] health_check_secs`): a
//! dead upstream is skipped before a request pays for finding out, and one that came
//! back is first in its deployment's order again. Each upstream's state is the metric
//! `warden_gateway_upstream_up`.

use super::Gateway;
use std::sync::Arc;
use std::time::Duration;
use warden_registry::SecureModelManager;

/// Probes every `every` until the task is aborted.
pub fn spawn(
    gw: Arc<Gateway>,
    m: Arc<SecureModelManager>,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut known: Vec<String> = Vec::new();
        loop {
            tick.tick().await;
            let upstreams = match m.deployed_upstreams().await {
                Ok(u) => u,
                Err(e) => {
                    crate::log(&format!("listing upstreams to probe: {e}"));
                    continue;
                }
            };
            for (u, up) in gw.upstreams.probe(&upstreams, every).await {
                if !up && !known.contains(&u) {
                    crate::log(&format!("upstream {u} does not answer its health probe"));
                }
                ::metrics::gauge!("warden_gateway_upstream_up", "upstream" => u.clone())
                    .set(if up { 1.0 } else { 0.0 });
                if up {
                    known.retain(|k| k != &u);
                } else if !known.contains(&u) {
                    known.push(u);
                }
            }
        }
    })
}
