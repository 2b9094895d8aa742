//! Sealing a request's prompt and answer to the auditors (`[gateway] seal_content`),
//! before its entry is written: the entry says whether the content was kept, and an
//! answer whose content could not be kept is not released.

use super::{Admitted, Endpoint, Gateway};
use warden_core::content::Content;
use warden_registry::Caller;

/// What the entry records of the content: `sealed`, or `prompt-only` (the answer was
/// too long to keep whole; only its digest is in the ledger).
pub(super) type Kept = &'static str;

/// Seals the content when the gateway keeps it: `Ok(None)` when it does not, else what
/// was kept; an error when it could not be made durable.
pub(super) async fn seal(
    gw: &Gateway,
    c: &Caller,
    ep: Endpoint,
    a: &Admitted,
    now: warden_core::time::Timestamp,
    response: Option<Vec<u8>>,
) -> Result<Option<Kept>, String> {
    let (Some(vault), Some(prompt)) = (gw.vault.as_ref(), a.prompt.as_ref()) else {
        return Ok(None);
    };
    let time = now.to_string();
    let day = time.get(..10).unwrap_or_default().to_owned();
    let kept = if response.is_some() {
        "sealed"
    } else {
        "prompt-only"
    };
    let content = Content {
        request_id: c.request_id.clone().unwrap_or_default(),
        time,
        endpoint: ep.route().to_owned(),
        deployment: a.deployed.name.clone(),
        prompt: prompt.clone(),
        response: None,
        response_base64: None,
    }
    .with_response(response.unwrap_or_default());
    let (tx, rx) = tokio::sync::oneshot::channel();
    vault.seal(
        content,
        day,
        Box::new(move |r| {
            let _ = tx.send(r);
        }),
    );
    rx.await
        .map_err(|_| "the content writer stopped".to_owned())??;
    Ok(Some(kept))
}
