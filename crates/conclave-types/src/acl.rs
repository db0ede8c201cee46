//! Access control on the wire: policies and their rules (also what the replicated state
//! stores), tokens as listed and as minted, and the requests that make them.

use serde::{Deserialize, Serialize};

/// How much a rule grants, each level including the ones below it.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    Read,
    Write,
    Admin,
}

impl Access {
    pub fn name(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Write => "write",
            Access::Admin => "admin",
        }
    }
}

/// What a rule is about.
///
/// JSON spells a rule flat, `{"resource": "kv", "prefix": "app/", "access": "write"}`; a
/// compact format (the Raft log, snapshots: postcard, which cannot read tagged or flattened
/// shapes) gets the plain enum. [`Rule`]'s serde picks by `is_human_readable`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum Resource {
    /// Keys that start with `prefix` (`""`: every key), and watches within them.
    Kv { prefix: String },
    /// Configuration documents of `kind`, or of every kind when absent.
    Config { kind: Option<String> },
    /// Elections and leader-bound roles.
    Elections,
    /// IPAM networks and address allocations.
    Ipam,
    /// Membership and cluster operations: members, leadership, status, metrics.
    Cluster,
    /// Snapshots: read to download, write to restore.
    Snapshot,
    /// Tokens and policies.
    Acl,
    /// The audit log.
    Audit,
}

/// One grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub resource: Resource,
    pub access: Access,
}

/// [`Resource`] as JSON spells it: tagged by `resource`.
#[derive(Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "resource", rename_all = "snake_case")]
#[schema(as = Resource)]
enum ResourceJson {
    Kv {
        prefix: String,
    },
    Config {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schema(pattern = "^[a-z][a-z0-9-]{0,62}$")]
        kind: Option<String>,
    },
    Elections,
    Ipam,
    Cluster,
    Snapshot,
    Acl,
    Audit,
}

#[derive(Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = Rule)]
struct RuleJson {
    #[serde(flatten)]
    resource: ResourceJson,
    access: Access,
}

impl From<Resource> for ResourceJson {
    fn from(r: Resource) -> Self {
        match r {
            Resource::Kv { prefix } => ResourceJson::Kv { prefix },
            Resource::Config { kind } => ResourceJson::Config { kind },
            Resource::Elections => ResourceJson::Elections,
            Resource::Ipam => ResourceJson::Ipam,
            Resource::Cluster => ResourceJson::Cluster,
            Resource::Snapshot => ResourceJson::Snapshot,
            Resource::Acl => ResourceJson::Acl,
            Resource::Audit => ResourceJson::Audit,
        }
    }
}

impl From<ResourceJson> for Resource {
    fn from(r: ResourceJson) -> Self {
        match r {
            ResourceJson::Kv { prefix } => Resource::Kv { prefix },
            ResourceJson::Config { kind } => Resource::Config { kind },
            ResourceJson::Elections => Resource::Elections,
            ResourceJson::Ipam => Resource::Ipam,
            ResourceJson::Cluster => Resource::Cluster,
            ResourceJson::Snapshot => Resource::Snapshot,
            ResourceJson::Acl => Resource::Acl,
            ResourceJson::Audit => Resource::Audit,
        }
    }
}

/// A policy's name as the API document describes it: 1 to 256 bytes.
pub struct PolicyName;

impl utoipa::PartialSchema for PolicyName {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .min_length(Some(1))
            .max_length(Some(256))
            .into()
    }
}

impl utoipa::ToSchema for PolicyName {}

/// A rule's schema is the JSON spelling's ([`RuleJson`]); postcard's tuple is not on the API.
impl utoipa::PartialSchema for Rule {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        <RuleJson as utoipa::PartialSchema>::schema()
    }
}

impl utoipa::ToSchema for Rule {
    fn name() -> std::borrow::Cow<'static, str> {
        <RuleJson as utoipa::ToSchema>::name()
    }

    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        <RuleJson as utoipa::ToSchema>::schemas(schemas)
    }
}

impl Serialize for Rule {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            RuleJson {
                resource: self.resource.clone().into(),
                access: self.access,
            }
            .serialize(s)
        } else {
            (&self.resource, self.access).serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for Rule {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let r = RuleJson::deserialize(d)?;
            Ok(Rule {
                resource: r.resource.into(),
                access: r.access,
            })
        } else {
            let (resource, access) = <(Resource, Access)>::deserialize(d)?;
            Ok(Rule { resource, access })
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Policy {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub rules: Vec<Rule>,
}

/// A token as `GET /v1/acl/tokens` lists it: never its secret, nor its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenInfo {
    pub accessor_id: String,
    pub description: String,
    pub policies: Vec<String>,
    /// Unix ms.
    pub created_ms: u64,
    /// Unix ms; absent: never expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_ms: Option<u64>,
}

/// A token just made: the only answer that carries its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenSecret {
    pub accessor_id: String,
    /// `Authorization: Bearer <secret_id>`; shown once, stored nowhere.
    pub secret_id: String,
    pub description: String,
    pub policies: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_ms: Option<u64>,
}

/// `POST /v1/acl/tokens`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    #[serde(default)]
    pub description: String,
    #[schema(value_type = Vec<PolicyName>, max_items = 128)]
    pub policies: Vec<String>,
    /// How long the token lives, e.g. "24h"; absent: until deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Numbers with units: ms, s, m, h, d (the API's duration grammar).
    #[schema(pattern = "^([0-9]{1,9}(ms|s|m|h|d))+$")]
    pub ttl: Option<String>,
}

/// `PUT /v1/acl/policies/{name}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyRequest {
    #[serde(default)]
    pub description: String,
    pub rules: Vec<Rule>,
}

/// `GET /v1/acl/token/self`: the caller's token and what its policies grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenSelf {
    pub token: TokenInfo,
    pub policies: Vec<Policy>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acl_messages_round_trip_with_optional_fields_empty_and_full() {
        let info = TokenInfo {
            accessor_id: "a1".into(),
            description: String::new(),
            policies: vec![],
            created_ms: 1,
            expires_ms: None,
        };
        let text = serde_json::to_string(&info).expect("json");
        assert!(!text.contains("expires_ms"), "{text}");
        assert_eq!(
            serde_json::from_str::<TokenInfo>(&text).expect("back"),
            info
        );
        let full = TokenInfo {
            expires_ms: Some(9),
            policies: vec!["ops".into()],
            ..info.clone()
        };
        let text = serde_json::to_string(&full).expect("json");
        assert_eq!(
            serde_json::from_str::<TokenInfo>(&text).expect("back"),
            full
        );

        let secret = TokenSecret {
            accessor_id: "a1".into(),
            secret_id: "a1.s".into(),
            description: "d".into(),
            policies: vec!["ops".into()],
            expires_ms: Some(3),
        };
        let text = serde_json::to_string(&secret).expect("json");
        assert_eq!(
            serde_json::from_str::<TokenSecret>(&text).expect("back"),
            secret
        );

        for req in [
            TokenRequest {
                description: String::new(),
                policies: vec![],
                ttl: None,
            },
            TokenRequest {
                description: "ci".into(),
                policies: vec!["ops".into()],
                ttl: Some("1h".into()),
            },
        ] {
            let text = serde_json::to_string(&req).expect("json");
            assert_eq!(
                serde_json::from_str::<TokenRequest>(&text).expect("back"),
                req
            );
        }
        let policy = PolicyRequest {
            description: String::new(),
            rules: vec![
                Rule {
                    resource: Resource::Kv {
                        prefix: "app/".into(),
                    },
                    access: Access::Write,
                },
                Rule {
                    resource: Resource::Config { kind: None },
                    access: Access::Read,
                },
                Rule {
                    resource: Resource::Config {
                        kind: Some("schema".into()),
                    },
                    access: Access::Admin,
                },
                Rule {
                    resource: Resource::Audit,
                    access: Access::Read,
                },
            ],
        };
        let text = serde_json::to_string(&policy).expect("json");
        assert_eq!(
            serde_json::from_str::<PolicyRequest>(&text).expect("back"),
            policy
        );
        let me = TokenSelf {
            token: full,
            policies: vec![Policy {
                name: "ops".into(),
                description: String::new(),
                rules: policy.rules,
            }],
        };
        let text = serde_json::to_string(&me).expect("json");
        assert_eq!(serde_json::from_str::<TokenSelf>(&text).expect("back"), me);
        assert!(serde_json::from_str::<TokenRequest>(r#"{"policies":[],"admin":true}"#).is_err());
    }
}
