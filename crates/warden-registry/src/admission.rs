//! Who a local process may act as: the writer's [`Admission`] over the registry's
//! bindings of operating-system users to principals.
//!
//! - A process whose OS user is bound to a principal acts as that principal (and may
//!   name it with `--as`); it may not name another.
//! - The data directory's owner and root act as administrators: they may name any
//!   principal (the CLI records on behalf of the people it serves), and their entries
//!   say so (`via: os-user=NAME admin`). Without `--as` they act as a principal named
//!   after their OS user.
//! - Anyone else is refused, and the refusal is an entry.

use crate::manager::SecureModelManager;
use std::sync::Arc;
use warden_store::writer::peer::Peer;
use warden_store::writer::server::{Admission, Identity};

/// [`Admission`] over a manager's bindings.
pub struct OsUsers {
    manager: Arc<SecureModelManager>,
    owner_uid: u32,
    rt: tokio::runtime::Handle,
}

impl std::fmt::Debug for OsUsers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OsUsers")
            .field("owner_uid", &self.owner_uid)
            .finish_non_exhaustive()
    }
}

impl OsUsers {
    /// `owner_uid` owns the data directory; `rt` runs the registry's queries.
    #[must_use]
    pub fn new(
        manager: Arc<SecureModelManager>,
        owner_uid: u32,
        rt: tokio::runtime::Handle,
    ) -> Self {
        Self {
            manager,
            owner_uid,
            rt,
        }
    }
}

impl Admission for OsUsers {
    fn admit(&self, peer: &Peer, claimed: Option<&str>) -> Result<Identity, String> {
        let admin = peer.uid == 0 || peer.uid == self.owner_uid;
        let bound = self
            .rt
            .block_on(self.manager.os_user_principal(&peer.user))
            .map_err(|e| format!("the registry could not be read: {e}"))?;
        match (claimed, bound) {
            (_, Some((p, false))) if !admin => Err(format!("principal {p:?} is suspended")),
            (None, Some((p, _))) => Ok(Identity {
                principal: p,
                admin,
            }),
            (Some(c), Some((p, _))) if c == p => Ok(Identity {
                principal: p,
                admin,
            }),
            (Some(c), _) if admin => Ok(Identity {
                principal: c.to_owned(),
                admin,
            }),
            (None, None) if admin => Ok(Identity {
                principal: peer.user.clone(),
                admin,
            }),
            (Some(_), Some((p, _))) => Err(format!("it is bound to principal {p:?} only")),
            (_, None) => Err(format!(
                "it is bound to no principal; an administrator binds it with `warden principal bind PRINCIPAL --os-user {}`",
                peer.user
            )),
        }
    }
}
