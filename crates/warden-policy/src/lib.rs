//! Warden's access policy: a Cedar schema and policy set, validated strictly, and
//! decisions that carry their reasons.
//!
//! Pure: no I/O, no clock. The caller builds an [`AccessRequest`] from what it knows
//! (the principal's roles and grants for the model in question, the version's state, the
//! request context with the time) and [`Engine::decide`] answers with a [`Decision`]
//! whose reason is the `@id` of every policy that determined it.

use cedar_policy::{
    ActionConstraint, Authorizer, Context, Decision as CedarDecision, Entities, Entity, EntityId,
    EntityTypeName, EntityUid, PolicySet, Request, RestrictedExpression, Schema, ValidationMode,
    Validator,
};
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;
use thiserror::Error;

mod cache;

/// The schema shipped with Warden (`policies/warden.cedarschema`).
pub const DEFAULT_SCHEMA: &str = include_str!("../../../policies/warden.cedarschema");
/// The default policy set shipped with Warden (`policies/warden.cedar`).
pub const DEFAULT_POLICIES: &str = include_str!("../../../policies/warden.cedar");

/// Why a policy set could not be loaded.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PolicyError {
    #[error("the policy schema does not parse: {0}")]
    Schema(String),
    #[error("the policies do not parse: {0}")]
    Parse(String),
    #[error("the policies do not validate against the schema: {0}")]
    Invalid(String),
    #[error(
        "policy {policy} has no @id annotation; every policy needs one (it is the audit reason)"
    )]
    MissingId { policy: String },
    #[error("two policies share the @id {id:?}")]
    DuplicateId { id: String },
    #[error("invalid request: {0}")]
    Request(String),
}

/// The actions the policy speaks of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Action {
    Read,
    Write,
    Register,
    Deploy,
    Retire,
    Load,
    Revoke,
    Audit,
    /// Inference through the gateway on a deployed version.
    Generate,
}

impl Action {
    /// Every action, in schema order.
    pub const ALL: [Action; 9] = [
        Action::Read,
        Action::Write,
        Action::Register,
        Action::Deploy,
        Action::Retire,
        Action::Load,
        Action::Revoke,
        Action::Audit,
        Action::Generate,
    ];

    /// The action's name in the schema.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::Write => "write",
            Action::Register => "register",
            Action::Deploy => "deploy",
            Action::Retire => "retire",
            Action::Load => "load",
            Action::Revoke => "revoke",
            Action::Audit => "audit",
            Action::Generate => "generate",
        }
    }

    /// Parses an action name.
    pub fn parse(s: &str) -> Result<Self, PolicyError> {
        Self::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| {
                PolicyError::Request(format!(
                    "unknown action {s:?} (expected one of read, write, register, deploy, retire, load, revoke, audit, generate)"
                ))
            })
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The roles of the default policy. Operators' policies may name others.
pub const ROLES: [&str; 6] = [
    "admin",
    "ml-engineer",
    "data-scientist",
    "service",
    "auditor",
    "security-officer",
];

/// Lifecycle state of a model version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum VersionState {
    Registered,
    Validated,
    Production,
    Retired,
    Revoked,
}

impl VersionState {
    /// Every state, in lifecycle order.
    pub const ALL: [VersionState; 5] = [
        VersionState::Registered,
        VersionState::Validated,
        VersionState::Production,
        VersionState::Retired,
        VersionState::Revoked,
    ];

    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            VersionState::Registered => "registered",
            VersionState::Validated => "validated",
            VersionState::Production => "production",
            VersionState::Retired => "retired",
            VersionState::Revoked => "revoked",
        }
    }

    /// Parses a state name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

impl std::fmt::Display for VersionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What is known of the principal making a request.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PrincipalFacts {
    pub name: String,
    /// A service account rather than a person.
    pub service: bool,
    pub active: bool,
    pub roles: Vec<String>,
    /// Grants the principal holds on the model in question: action and expiry (Unix
    /// seconds). Expired grants are passed too; the policy decides.
    pub grants: Vec<(Action, i64)>,
}

/// The resource a request is about.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ResourceFacts {
    /// A model as a whole (registering a new version, listing).
    Model { name: String },
    /// One version of a model.
    Version {
        model: String,
        version: String,
        state: VersionState,
        registrant: String,
        validated: bool,
    },
    /// The audit ledger.
    Ledger,
    /// The directory of principals, roles and grants.
    Directory,
}

/// The request context.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ContextFacts {
    /// Decision time, Unix seconds.
    pub now: i64,
    pub ip: IpAddr,
    pub mfa: bool,
    /// `Some` when the caller presented a scoped token.
    pub scopes: Option<Vec<String>>,
    /// For `deploy`: the target state.
    pub target: Option<VersionState>,
}

/// One authorization question.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AccessRequest {
    pub principal: PrincipalFacts,
    pub action: Action,
    pub resource: ResourceFacts,
    pub context: ContextFacts,
}

/// The answer, with the policies that determined it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use = "a decision must be acted on"]
pub struct Decision {
    pub allowed: bool,
    /// `@id`s of the determining policies: the permits for an allow, the forbids for a
    /// deny; empty for a default deny.
    pub policies: Vec<String>,
    /// Evaluation errors (a deny when they occur): a policy referred to a missing value.
    pub errors: Vec<String>,
}

impl Decision {
    /// A short reason code for the audit record: `permit:<ids>`, `forbid:<ids>`, or
    /// `default-deny` when no policy permits the request.
    #[must_use]
    pub fn reason(&self) -> String {
        if self.allowed {
            format!("permit:{}", self.policies.join(","))
        } else if !self.policies.is_empty() {
            format!("forbid:{}", self.policies.join(","))
        } else if !self.errors.is_empty() {
            format!("error:{}", self.errors.join("; "))
        } else {
            "default-deny".to_owned()
        }
    }
}

/// A loaded, validated policy set.
#[derive(Debug)]
pub struct Engine {
    schema: Schema,
    /// The policies that can apply to each action, in `Action::ALL` order: a policy
    /// whose action scope excludes an action always evaluates to false for it, so
    /// leaving it out changes no decision and saves its evaluation.
    by_action: Vec<PolicySet>,
    /// Every policy: what the reference mode ([`Engine::validating_requests`]) evaluates.
    all: PolicySet,
    ids: HashMap<String, String>,
    authorizer: Authorizer,
    types: Types,
    validate_requests: bool,
    /// Built `ip` values, entity slices and decisions kept between evaluations.
    addresses: cache::Addresses,
    slices: cache::Slices,
    decisions: cache::Decisions,
}

/// Whether a decision was evaluated or repeated from the cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Evaluated {
    Fresh,
    Cached,
}

#[derive(Debug)]
struct Types {
    user: EntityTypeName,
    role: EntityTypeName,
    model: EntityTypeName,
    version: EntityTypeName,
    ledger: EntityTypeName,
    directory: EntityTypeName,
    action: EntityTypeName,
}

fn type_name(s: &str) -> Result<EntityTypeName, PolicyError> {
    EntityTypeName::from_str(s).map_err(|e| PolicyError::Schema(e.to_string()))
}

impl Engine {
    /// The policy shipped with Warden.
    pub fn default_policy() -> Result<Self, PolicyError> {
        Self::new(DEFAULT_SCHEMA, DEFAULT_POLICIES)
    }

    /// Parses `schema` and `policies` (Cedar syntax) and validates the policies strictly
    /// against the schema. Every policy must carry a unique `@id`.
    pub fn new(schema: &str, policies: &str) -> Result<Self, PolicyError> {
        let (schema, _warnings) =
            Schema::from_cedarschema_str(schema).map_err(|e| PolicyError::Schema(e.to_string()))?;
        let policies =
            PolicySet::from_str(policies).map_err(|e| PolicyError::Parse(e.to_string()))?;
        let result = Validator::new(schema.clone()).validate(&policies, ValidationMode::Strict);
        if !result.validation_passed() {
            let msgs: Vec<String> = result.validation_errors().map(|e| e.to_string()).collect();
            return Err(PolicyError::Invalid(msgs.join("; ")));
        }
        let by_action = partition_by_action(&policies)?;
        let mut ids = HashMap::new();
        let mut seen = HashSet::new();
        for p in policies.policies() {
            let id = p
                .annotation("id")
                .ok_or_else(|| PolicyError::MissingId {
                    policy: p.id().to_string(),
                })?
                .to_owned();
            if !seen.insert(id.clone()) {
                return Err(PolicyError::DuplicateId { id });
            }
            ids.insert(p.id().to_string(), id);
        }
        Ok(Self {
            schema,
            by_action,
            all: policies,
            ids,
            authorizer: Authorizer::new(),
            validate_requests: false,
            addresses: cache::Addresses::new(),
            slices: cache::Slices::new(),
            decisions: cache::Decisions::new(),
            types: Types {
                user: type_name("User")?,
                role: type_name("Role")?,
                model: type_name("Model")?,
                version: type_name("ModelVersion")?,
                ledger: type_name("Ledger")?,
                directory: type_name("Directory")?,
                action: type_name("Action")?,
            },
        })
    }

    /// Reference mode: validate every request and entity slice against the schema and
    /// evaluate every policy (slower; tests use it to prove the fast path, which skips
    /// both, decides identically).
    #[must_use]
    pub fn validating_requests(mut self) -> Self {
        self.validate_requests = true;
        self
    }

    /// Number of policies.
    #[must_use]
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True when the policy set is empty (everything is denied).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Answers one request. A request that does not fit the schema is a deny whose
    /// reason says so, never an allow.
    pub fn decide(&self, req: &AccessRequest) -> Decision {
        self.decide_cached(req).0
    }

    /// [`Engine::decide`], saying whether the answer was evaluated or repeated.
    pub fn decide_cached(&self, req: &AccessRequest) -> (Decision, Evaluated) {
        match self.cached(req) {
            Some(d) => (d, Evaluated::Cached),
            None => (self.evaluate(req), Evaluated::Fresh),
        }
    }

    /// The decision already made for exactly this request, if it is still kept.
    pub fn cached(&self, req: &AccessRequest) -> Option<Decision> {
        if self.validate_requests {
            return None;
        }
        self.decisions.get(req)
    }

    /// Evaluates the policies for `req` and keeps the decision for repeats.
    pub fn evaluate(&self, req: &AccessRequest) -> Decision {
        let d = match self.try_decide(req) {
            Ok(d) => d,
            Err(e) => Decision {
                allowed: false,
                policies: Vec::new(),
                errors: vec![e.to_string()],
            },
        };
        if !self.validate_requests && d.errors.is_empty() {
            self.decisions.put(req, &d);
        }
        d
    }

    fn uid(ty: &EntityTypeName, id: &str) -> EntityUid {
        EntityUid::from_type_name_and_id(ty.clone(), EntityId::new(id))
    }

    /// The uid of the resource `r` names.
    fn resource_uid(&self, r: &ResourceFacts) -> EntityUid {
        let t = &self.types;
        match r {
            ResourceFacts::Model { name } => Self::uid(&t.model, name),
            ResourceFacts::Version { model, version, .. } => {
                Self::uid(&t.version, &format!("{model}@{version}"))
            }
            ResourceFacts::Ledger => Self::uid(&t.ledger, "audit"),
            ResourceFacts::Directory => Self::uid(&t.directory, "principals"),
        }
    }

    /// The entity slice of a request: the principal and the resource, closed.
    fn slice(
        &self,
        p: &PrincipalFacts,
        r: &ResourceFacts,
        schema: Option<&Schema>,
    ) -> Result<Entities, PolicyError> {
        let t = &self.types;
        let principal = Self::uid(&t.user, &p.name);
        let mut grants: Vec<(String, RestrictedExpression)> = Vec::new();
        for (action, expires) in &p.grants {
            let name = action.as_str().to_owned();
            if grants.iter().any(|(n, _)| *n == name) {
                continue;
            }
            let g = RestrictedExpression::new_record([(
                "expires".to_owned(),
                RestrictedExpression::new_long(*expires),
            )])
            .map_err(|e| PolicyError::Request(e.to_string()))?;
            grants.push((name, g));
        }
        let grants = RestrictedExpression::new_record(grants)
            .map_err(|e| PolicyError::Request(e.to_string()))?;
        let user = Entity::new(
            principal.clone(),
            HashMap::from([
                (
                    "kind".to_owned(),
                    RestrictedExpression::new_string(
                        if p.service { "service" } else { "user" }.to_owned(),
                    ),
                ),
                (
                    "active".to_owned(),
                    RestrictedExpression::new_bool(p.active),
                ),
                ("grants".to_owned(), grants),
            ]),
            p.roles.iter().map(|r| Self::uid(&t.role, r)).collect(),
        )
        .map_err(|e| PolicyError::Request(e.to_string()))?;
        // Role entities carry no attributes and `principal in Role::"x"` follows the
        // user's parent links, so the roles need not be materialised; nor does the model
        // a version belongs to (the schema gives models no attribute a version policy
        // could reach).
        let mut entities = vec![user];
        let uid = self.resource_uid(r);
        match r {
            ResourceFacts::Model { name } => entities.push(model_entity(uid, name)?),
            ResourceFacts::Version {
                model,
                state,
                registrant,
                validated,
                ..
            } => entities.push(
                Entity::new(
                    uid,
                    HashMap::from([
                        (
                            "state".to_owned(),
                            RestrictedExpression::new_string(state.as_str().to_owned()),
                        ),
                        (
                            "registrant".to_owned(),
                            RestrictedExpression::new_entity_uid(Self::uid(&t.user, registrant)),
                        ),
                        (
                            "validated".to_owned(),
                            RestrictedExpression::new_bool(*validated),
                        ),
                    ]),
                    HashSet::from([Self::uid(&t.model, model)]),
                )
                .map_err(|e| PolicyError::Request(e.to_string()))?,
            ),
            ResourceFacts::Ledger | ResourceFacts::Directory => {
                entities.push(Entity::new_no_attrs(uid, HashSet::new()));
            }
        }
        Entities::from_entities(entities, schema).map_err(|e| PolicyError::Request(e.to_string()))
    }

    /// The slice for `req`, built once per principal–resource pair (except in the
    /// reference mode, which builds and validates it every time).
    fn entities(
        &self,
        req: &AccessRequest,
        schema: Option<&Schema>,
    ) -> Result<Arc<Entities>, PolicyError> {
        if self.validate_requests {
            return self
                .slice(&req.principal, &req.resource, schema)
                .map(Arc::new);
        }
        if let Some(e) = self.slices.get(&req.principal, &req.resource) {
            return Ok(e);
        }
        let e = Arc::new(self.slice(&req.principal, &req.resource, schema)?);
        self.slices
            .put(&req.principal, &req.resource, Arc::clone(&e));
        Ok(e)
    }

    fn try_decide(&self, req: &AccessRequest) -> Result<Decision, PolicyError> {
        let t = &self.types;
        // The entity slice and context are built here from typed facts in the shape the
        // schema declares (the policies were validated strictly against it at load), so
        // they are not re-validated per request; a test checks the shapes agree.
        let schema = if self.validate_requests {
            Some(&self.schema)
        } else {
            None
        };
        let entities = self.entities(req, schema)?;
        let principal = Self::uid(&t.user, &req.principal.name);
        let resource = self.resource_uid(&req.resource);
        let c = &req.context;
        let mut ctx = vec![
            ("now".to_owned(), RestrictedExpression::new_long(c.now)),
            ("ip".to_owned(), self.addresses.expr(c.ip)),
            ("mfa".to_owned(), RestrictedExpression::new_bool(c.mfa)),
            (
                "scoped".to_owned(),
                RestrictedExpression::new_bool(c.scopes.is_some()),
            ),
            (
                "scopes".to_owned(),
                RestrictedExpression::new_set(
                    c.scopes
                        .iter()
                        .flatten()
                        .map(|s| RestrictedExpression::new_string(s.clone())),
                ),
            ),
        ];
        if let Some(target) = c.target {
            ctx.push((
                "target".to_owned(),
                RestrictedExpression::new_string(target.as_str().to_owned()),
            ));
        }
        let context = Context::from_pairs(ctx).map_err(|e| PolicyError::Request(e.to_string()))?;
        let action = Self::uid(&t.action, req.action.as_str());
        let request = Request::new(principal, action, resource, context, schema)
            .map_err(|e| PolicyError::Request(e.to_string()))?;
        let slot = Action::ALL
            .iter()
            .position(|a| *a == req.action)
            .unwrap_or_default();
        let policies = if self.validate_requests {
            &self.all
        } else {
            self.by_action
                .get(slot)
                .ok_or_else(|| PolicyError::Request("no policy slice for the action".into()))?
        };
        let response = self.authorizer.is_authorized(&request, policies, &entities);
        let mut policies: Vec<String> = response
            .diagnostics()
            .reason()
            .map(|id| {
                self.ids
                    .get(&id.to_string())
                    .cloned()
                    .unwrap_or_else(|| id.to_string())
            })
            .collect();
        policies.sort();
        let errors = response
            .diagnostics()
            .errors()
            .map(ToString::to_string)
            .collect();
        Ok(Decision {
            allowed: response.decision() == CedarDecision::Allow,
            policies,
            errors,
        })
    }
}

/// One policy set per action of [`Action::ALL`]. A scope naming something other than
/// the plain actions (an action group in an operator's schema) could match through the
/// hierarchy, so then every slice holds every policy.
fn partition_by_action(all: &PolicySet) -> Result<Vec<PolicySet>, PolicyError> {
    let name = |uid: &EntityUid| -> Option<Action> {
        (uid.type_name().to_string() == "Action")
            .then(|| Action::parse(uid.id().unescaped()).ok())
            .flatten()
    };
    let mut plain = true;
    let mut scopes = Vec::new();
    for p in all.policies() {
        let set: Option<Vec<Action>> = match p.action_constraint() {
            ActionConstraint::Any => None,
            ActionConstraint::Eq(uid) => name(&uid).map(|a| vec![a]),
            ActionConstraint::In(uids) => uids.iter().map(name).collect(),
        };
        if set.is_none() && !matches!(p.action_constraint(), ActionConstraint::Any) {
            plain = false;
        }
        scopes.push((p.clone(), set));
    }
    let mut out = Vec::new();
    for a in Action::ALL {
        let mut ps = PolicySet::new();
        for (p, set) in &scopes {
            if !plain || set.as_ref().is_none_or(|s| s.contains(&a)) {
                ps.add(p.clone())
                    .map_err(|e| PolicyError::Parse(e.to_string()))?;
            }
        }
        out.push(ps);
    }
    Ok(out)
}

fn model_entity(uid: EntityUid, name: &str) -> Result<Entity, PolicyError> {
    Entity::new(
        uid,
        HashMap::from([(
            "name".to_owned(),
            RestrictedExpression::new_string(name.to_owned()),
        )]),
        HashSet::new(),
    )
    .map_err(|e| PolicyError::Request(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(roles: &[&str], action: Action, state: VersionState) -> AccessRequest {
        AccessRequest {
            principal: PrincipalFacts {
                name: "alice".into(),
                service: false,
                active: true,
                roles: roles.iter().map(|s| (*s).to_owned()).collect(),
                grants: vec![],
            },
            action,
            resource: ResourceFacts::Version {
                model: "m".into(),
                version: "1".into(),
                state,
                registrant: "bob".into(),
                validated: true,
            },
            context: ContextFacts {
                now: 1_000,
                ip: "192.0.2.1".parse().unwrap(),
                mfa: true,
                scopes: None,
                target: None,
            },
        }
    }

    #[test]
    fn default_policy_validates_strictly() {
        let e = Engine::default_policy().unwrap();
        assert!(e.len() > 10);
    }

    #[test]
    fn policy_that_misuses_the_schema_is_rejected() {
        let bad =
            r#"@id("x") permit(principal, action, resource) when { resource.colour == "red" };"#;
        assert!(matches!(
            Engine::new(DEFAULT_SCHEMA, bad),
            Err(PolicyError::Invalid(_))
        ));
        let no_id = "permit(principal, action, resource);";
        assert!(matches!(
            Engine::new(DEFAULT_SCHEMA, no_id),
            Err(PolicyError::MissingId { .. })
        ));
    }

    #[test]
    fn reasons_name_the_policies() {
        let e = Engine::default_policy().unwrap();
        let d = e.decide(&req(&["admin"], Action::Load, VersionState::Production));
        assert!(d.allowed);
        assert_eq!(d.reason(), "permit:role-admin");
        let d = e.decide(&req(&["admin"], Action::Load, VersionState::Revoked));
        assert!(!d.allowed);
        assert_eq!(d.reason(), "forbid:revoked-version");
        let d = e.decide(&req(&[], Action::Load, VersionState::Production));
        assert_eq!(d.reason(), "default-deny");
    }

    #[test]
    fn a_kept_entity_slice_or_decision_never_outlives_the_grant_it_was_built_with() {
        let fast = Engine::default_policy().unwrap();
        let strict = Engine::default_policy().unwrap().validating_requests();
        let mut r = req(&["service"], Action::Load, VersionState::Production);
        r.principal.service = true;
        r.principal.grants = vec![(Action::Load, 2_000)];
        let mut seen = Vec::new();
        // The same principal and version, second by second across the grant's expiry,
        // and back again (a late request): the slice is built once, the time is not.
        for now in [1_998, 1_999, 1_999, 2_000, 2_001, 1_999, 2_001] {
            r.context.now = now;
            let d = fast.decide(&r);
            assert_eq!(d, strict.decide(&r), "at {now}");
            seen.push(d.allowed);
        }
        assert_eq!(seen, [true, true, true, false, false, true, false]);
        // A renewed grant is a new slice, never the old one.
        r.principal.grants = vec![(Action::Load, 3_000)];
        assert!(fast.decide(&r).allowed);
    }

    #[test]
    fn entity_slices_match_the_schema_for_every_shape() {
        let strict = Engine::default_policy().unwrap().validating_requests();
        let fast = Engine::default_policy().unwrap();
        let mut compared = 0;
        for action in Action::ALL {
            for state in VersionState::ALL {
                for resource in [
                    req(&["admin"], action, state).resource,
                    ResourceFacts::Model { name: "m".into() },
                    ResourceFacts::Ledger,
                    ResourceFacts::Directory,
                ] {
                    let mut r = req(&["ml-engineer", "auditor"], action, state);
                    r.resource = resource;
                    r.principal.grants = vec![(Action::Load, 5), (action, 9_999)];
                    r.context.scopes = Some(vec!["model:load".into()]);
                    r.context.target = Some(VersionState::Production);
                    let a = strict.decide(&r);
                    let b = fast.decide(&r);
                    // The strict engine rejects requests the schema does not allow for
                    // this action/resource pair; every other one must agree exactly.
                    if a.errors.iter().all(|e| !e.contains("invalid request")) {
                        assert!(a.errors.is_empty(), "{action} {state}: {:?}", a.errors);
                        assert_eq!(a, b, "{action} {state}");
                        compared += 1;
                    }
                }
            }
        }
        // Every action applies to versions and models; read/write/audit to more.
        assert!(compared >= 8 * 5 * 2, "only {compared} requests compared");
    }

    #[test]
    fn grants_expire() {
        let e = Engine::default_policy().unwrap();
        let mut r = req(&[], Action::Load, VersionState::Production);
        r.principal.grants = vec![(Action::Load, 2_000)];
        assert!(e.decide(&r).allowed);
        r.context.now = 2_000;
        assert!(!e.decide(&r).allowed);
    }
}
