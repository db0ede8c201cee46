use super::*;

fn token(accessor: &str, policies: &[&str], expires_ms: Option<u64>) -> Token {
    Token {
        accessor_id: accessor.into(),
        secret_hash: "00".repeat(32),
        salt: "11".repeat(16),
        description: String::new(),
        policies: policies.iter().map(|p| p.to_string()).collect(),
        created_ms: 1,
        expires_ms,
    }
}

fn need(target: Target, access: Access) -> Need {
    Need { target, access }
}

fn app_writer() -> Policy {
    Policy {
        name: "app-writer".into(),
        description: String::new(),
        rules: vec![
            Rule {
                resource: Resource::Kv {
                    prefix: "app/".into(),
                },
                access: Access::Write,
            },
            Rule {
                resource: Resource::Config {
                    kind: Some("remote-peers".into()),
                },
                access: Access::Read,
            },
        ],
    }
}

#[test]
fn a_rule_grants_its_access_and_less_within_its_resource_only() {
    let mut acl = AclState::default();
    acl.apply(&AclCommand::PutPolicy(app_writer()))
        .expect("policy");
    let t = token("a1", &["app-writer"], None);
    assert!(acl.allows(&t, &need(Target::Kv("app/color".into()), Access::Write), 0));
    assert!(acl.allows(&t, &need(Target::Kv("app/".into()), Access::Read), 0));
    assert!(!acl.allows(&t, &need(Target::Kv("app/color".into()), Access::Admin), 0));
    assert!(!acl.allows(&t, &need(Target::Kv("apple".into()), Access::Read), 0));
    assert!(
        !acl.allows(&t, &need(Target::Kv("".into()), Access::Read), 0),
        "a listing of every key"
    );
    assert!(acl.allows(
        &t,
        &need(Target::Config(Some("remote-peers".into())), Access::Read),
        0
    ));
    assert!(!acl.allows(
        &t,
        &need(Target::Config(Some("remote-peers".into())), Access::Write),
        0
    ));
    assert!(
        !acl.allows(&t, &need(Target::Config(None), Access::Read), 0),
        "every kind"
    );
    assert!(!acl.allows(&t, &need(Target::Cluster, Access::Read), 0));
    // Unknown policies grant nothing; expired tokens nothing at all.
    let ghost = token("a2", &["nope"], None);
    assert!(!acl.allows(&ghost, &need(Target::Kv("app/x".into()), Access::Read), 0));
    let old = token("a3", &[GLOBAL_MANAGEMENT], Some(100));
    assert!(acl.allows(&old, &need(Target::Acl, Access::Admin), 99));
    assert!(!acl.allows(&old, &need(Target::Acl, Access::Admin), 100));
}

#[test]
fn bootstrap_happens_once_and_the_built_in_policy_cannot_be_touched() {
    let mut acl = AclState::default();
    acl.apply(&AclCommand::Bootstrap(token(
        "root",
        &[GLOBAL_MANAGEMENT],
        None,
    )))
    .expect("first bootstrap");
    assert_eq!(
        acl.apply(&AclCommand::Bootstrap(token(
            "again",
            &[GLOBAL_MANAGEMENT],
            None
        ))),
        Err(AclRefusal::AlreadyBootstrapped)
    );
    let root = acl.tokens["root"].clone();
    for target in [
        Target::Kv(String::new()),
        Target::Config(None),
        Target::Elections,
        Target::Ipam,
        Target::Cluster,
        Target::Snapshot,
        Target::Acl,
        Target::Audit,
    ] {
        assert!(acl.allows(&root, &need(target, Access::Admin), 0));
    }
    let mut evil = global_management();
    evil.rules.clear();
    assert_eq!(
        acl.apply(&AclCommand::PutPolicy(evil)),
        Err(AclRefusal::BuiltIn)
    );
    assert_eq!(
        acl.apply(&AclCommand::DeletePolicy {
            name: GLOBAL_MANAGEMENT.into()
        }),
        Err(AclRefusal::BuiltIn)
    );
}

#[test]
fn tokens_need_known_policies_and_policies_in_use_stay() {
    let mut acl = AclState::default();
    let before = acl.clone();
    assert_eq!(
        acl.apply(&AclCommand::CreateToken(token("t1", &["app-writer"], None))),
        Err(AclRefusal::UnknownPolicy("app-writer".into()))
    );
    assert_eq!(acl, before, "a refused command changes nothing");
    acl.apply(&AclCommand::PutPolicy(app_writer()))
        .expect("policy");
    acl.apply(&AclCommand::CreateToken(token("t1", &["app-writer"], None)))
        .expect("token");
    assert_eq!(
        acl.apply(&AclCommand::CreateToken(token("t1", &["app-writer"], None))),
        Err(AclRefusal::DuplicateAccessor("t1".into()))
    );
    assert!(matches!(
        acl.apply(&AclCommand::DeletePolicy {
            name: "app-writer".into()
        }),
        Err(AclRefusal::PolicyInUse { .. })
    ));
    acl.apply(&AclCommand::DeleteToken {
        accessor_id: "t1".into(),
    })
    .expect("revoke");
    assert_eq!(
        acl.apply(&AclCommand::DeleteToken {
            accessor_id: "t1".into()
        }),
        Err(AclRefusal::UnknownToken("t1".into()))
    );
    acl.apply(&AclCommand::DeletePolicy {
        name: "app-writer".into(),
    })
    .expect("unused now");
}

#[test]
fn policies_round_trip_through_their_json_shape() {
    let text = r#"{"name":"ops","rules":[
        {"resource":"kv","prefix":"","access":"read"},
        {"resource":"config","access":"write"},
        {"resource":"cluster","access":"admin"}]}"#;
    let p: Policy = serde_json::from_str(text).expect("parses");
    assert_eq!(p.rules[1].resource, Resource::Config { kind: None });
    let again: Policy =
        serde_json::from_str(&serde_json::to_string(&p).expect("json")).expect("parses");
    assert_eq!(again, p);
    let bad = r#"{"name":"x","rules":[{"resource":"kv","prefix":"a","access":"sudo"}]}"#;
    assert!(serde_json::from_str::<Policy>(bad).is_err());
}

/// Every ACL command, each resource in it, survives the log's encoding (postcard, which
/// cannot read tagged or flattened shapes: a policy once made the log append fail).
#[test]
fn every_acl_command_round_trips_through_the_log_encoding() {
    let every = Policy {
        name: "every".into(),
        description: "all kinds".into(),
        rules: vec![
            Rule {
                resource: Resource::Kv {
                    prefix: "app/".into(),
                },
                access: Access::Read,
            },
            Rule {
                resource: Resource::Config { kind: None },
                access: Access::Write,
            },
            Rule {
                resource: Resource::Config {
                    kind: Some("schema".into()),
                },
                access: Access::Admin,
            },
            Rule {
                resource: Resource::Elections,
                access: Access::Read,
            },
            Rule {
                resource: Resource::Ipam,
                access: Access::Read,
            },
            Rule {
                resource: Resource::Cluster,
                access: Access::Read,
            },
            Rule {
                resource: Resource::Snapshot,
                access: Access::Read,
            },
            Rule {
                resource: Resource::Acl,
                access: Access::Read,
            },
            Rule {
                resource: Resource::Audit,
                access: Access::Read,
            },
        ],
    };
    let commands = [
        AclCommand::Bootstrap(token("root", &[GLOBAL_MANAGEMENT], None)),
        AclCommand::PutPolicy(every),
        AclCommand::DeletePolicy {
            name: "every".into(),
        },
        AclCommand::CreateToken(token("t", &["every"], Some(9))),
        AclCommand::DeleteToken {
            accessor_id: "t".into(),
        },
    ];
    for c in commands {
        let command = crate::Command::Acl(c);
        let bytes = postcard::to_allocvec(&command).expect("encodes");
        let back: crate::Command = postcard::from_bytes(&bytes).expect("decodes");
        assert_eq!(back, command);
        let json = serde_json::to_string(&command).expect("json");
        assert_eq!(
            serde_json::from_str::<crate::Command>(&json).expect("json back"),
            command
        );
    }
}
