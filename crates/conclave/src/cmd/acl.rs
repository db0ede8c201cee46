//! `conclave acl`: bootstrap, tokens and policies.

use std::path::PathBuf;

use clap::Subcommand;
use conclave_types::acl::{Access, PolicyRequest, Resource, Rule, TokenRequest, TokenSecret};

use crate::cli::{ClientOpts, Output};
use crate::client::ClientError;
use crate::output::print_json;

#[derive(Subcommand, Debug)]
pub(crate) enum AclCommand {
    /// Make the cluster's first management token (once); prints its secret, shown only now.
    #[command(
        after_help = "Examples:\n  conclave acl bootstrap\n  conclave acl bootstrap -o json   # {\"accessor_id\", \"secret_id\", ...}"
    )]
    Bootstrap {
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Tokens: who may call the API.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Policies: what a token may do.
    #[command(subcommand)]
    Policy(PolicyCommand),
}

#[derive(Subcommand, Debug)]
pub(crate) enum TokenCommand {
    /// Make a token holding policies; prints its secret, shown only now.
    #[command(
        after_help = "Examples:\n  conclave acl token create --policy app-writer --description deploy-bot\n  conclave acl token create --policy ops --ttl 24h -o json"
    )]
    Create {
        /// A policy the token holds (repeatable).
        #[arg(long = "policy", required = true)]
        policies: Vec<String>,
        #[arg(long, default_value = "")]
        description: String,
        /// How long the token lives (e.g. 24h); default: until deleted.
        #[arg(long)]
        ttl: Option<String>,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// List tokens (accessors, never secrets).
    List {
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Revoke a token by its accessor.
    Delete {
        accessor: String,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// The token this CLI sends, and what it may do.
    #[command(name = "self")]
    Whoami {
        #[command(flatten)]
        client: ClientOpts,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum PolicyCommand {
    /// Create or replace a policy from --rule flags or a JSON file.
    #[command(
        after_help = "Rules are RESOURCE[:SCOPE]:ACCESS, ACCESS one of read, write, admin:\n  kv:PREFIX:ACCESS      keys starting with PREFIX (kv::read: every key)\n  config:KIND:ACCESS    documents of KIND (config:*:ACCESS: every kind)\n  elections:ACCESS  ipam:ACCESS  cluster:ACCESS  snapshot:ACCESS  acl:ACCESS  audit:ACCESS\n\nExamples:\n  conclave acl policy put app-writer --rule kv:app/:write --rule config:remote-peers:read\n  conclave acl policy put ops -f ops.json   # {\"description\": \"...\", \"rules\": [{\"resource\": \"cluster\", \"access\": \"admin\"}]}"
    )]
    Put {
        name: String,
        /// A rule (repeatable), e.g. kv:app/:write.
        #[arg(long = "rule", conflicts_with = "file")]
        rules: Vec<String>,
        /// A JSON file with {"description", "rules"}.
        #[arg(long, short = 'f')]
        file: Option<PathBuf>,
        #[arg(long, default_value = "")]
        description: String,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// List policies with their rules.
    List {
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Delete a policy no token holds.
    Delete {
        name: String,
        #[command(flatten)]
        client: ClientOpts,
    },
}

/// `RESOURCE[:SCOPE]:ACCESS` → a rule, or what is wrong with it.
pub(crate) fn parse_rule(spec: &str) -> Result<Rule, String> {
    let usage = |why: &str| {
        format!(
            "--rule {spec:?}: {why}; write RESOURCE[:SCOPE]:ACCESS, e.g. kv:app/:write or cluster:read"
        )
    };
    let (head, access) = spec
        .rsplit_once(':')
        .ok_or_else(|| usage("no access level"))?;
    let access = match access {
        "read" => Access::Read,
        "write" => Access::Write,
        "admin" => Access::Admin,
        other => {
            return Err(usage(&format!(
                "access {other:?} is not read, write or admin"
            )));
        }
    };
    let (resource, scope) = match head.split_once(':') {
        Some((r, s)) => (r, Some(s)),
        None => (head, None),
    };
    let resource = match (resource, scope) {
        ("kv", Some(prefix)) => Resource::Kv {
            prefix: prefix.to_owned(),
        },
        ("kv", None) => return Err(usage("kv needs a prefix (kv::read for every key)")),
        ("config", Some("*")) | ("config", None) => Resource::Config { kind: None },
        ("config", Some(kind)) => Resource::Config {
            kind: Some(kind.to_owned()),
        },
        ("elections", None) => Resource::Elections,
        ("ipam", None) => Resource::Ipam,
        ("cluster", None) => Resource::Cluster,
        ("snapshot", None) => Resource::Snapshot,
        ("acl", None) => Resource::Acl,
        ("audit", None) => Resource::Audit,
        (other, _) => {
            return Err(usage(&format!(
                "{other:?} is not kv, config, elections, ipam, cluster, snapshot, acl or audit, or takes no scope"
            )));
        }
    };
    Ok(Rule { resource, access })
}

fn print_secret(t: &TokenSecret, json: bool) {
    if json {
        print_json(&serde_json::to_value(t).unwrap_or_default());
        return;
    }
    out!("AccessorID: {}", t.accessor_id);
    out!("SecretID:   {}", t.secret_id);
    out!("Policies:   {}", t.policies.join(", "));
    out!("(the secret is shown only now: keep it; CONCLAVE_TOKEN=<SecretID> for the CLI)");
}

pub(crate) async fn run(cmd: AclCommand) -> Result<(), ClientError> {
    match cmd {
        AclCommand::Bootstrap { client } => {
            let t = client.client()?.acl_bootstrap().await?;
            print_secret(&t, client.output == Output::Json);
        }
        AclCommand::Token(TokenCommand::Create {
            policies,
            description,
            ttl,
            client,
        }) => {
            let req = TokenRequest {
                description,
                policies,
                ttl,
            };
            let t = client.client()?.acl_token_create(&req).await?;
            print_secret(&t, client.output == Output::Json);
        }
        AclCommand::Token(TokenCommand::List { client }) => {
            let tokens = client.client()?.acl_tokens().await?;
            if client.output == Output::Json {
                print_json(&serde_json::to_value(&tokens).unwrap_or_default());
            } else {
                out!("{:<34} {:<28} DESCRIPTION", "ACCESSOR", "POLICIES");
                for t in tokens {
                    out!(
                        "{:<34} {:<28} {}",
                        t.accessor_id,
                        t.policies.join(","),
                        t.description
                    );
                }
            }
        }
        AclCommand::Token(TokenCommand::Delete { accessor, client }) => {
            client.client()?.acl_token_delete(&accessor).await?;
            out!("deleted token {accessor}");
        }
        AclCommand::Token(TokenCommand::Whoami { client }) => {
            let me = client.client()?.acl_token_self().await?;
            if client.output == Output::Json {
                print_json(&serde_json::to_value(&me).unwrap_or_default());
            } else {
                out!(
                    "accessor {} ({})",
                    me.token.accessor_id,
                    me.token.description
                );
                for p in me.policies {
                    out!(
                        "policy {}: {}",
                        p.name,
                        serde_json::to_string(&p.rules).unwrap_or_default()
                    );
                }
            }
        }
        AclCommand::Policy(PolicyCommand::Put {
            name,
            rules,
            file,
            description,
            client,
        }) => {
            let req = match file {
                Some(path) => {
                    let text = std::fs::read(&path).map_err(|e| {
                        ClientError::Usage(format!("cannot read {}: {e}", path.display()))
                    })?;
                    serde_json::from_slice::<PolicyRequest>(&text).map_err(|e| {
                        ClientError::Usage(format!(
                            "{} is not a policy ({{\"description\", \"rules\"}}): {e}",
                            path.display()
                        ))
                    })?
                }
                None if rules.is_empty() => {
                    return Err(ClientError::Usage(
                        "give the policy's rules with --rule (repeatable) or -f FILE".into(),
                    ));
                }
                None => PolicyRequest {
                    description,
                    rules: rules
                        .iter()
                        .map(|r| parse_rule(r))
                        .collect::<Result<_, _>>()
                        .map_err(ClientError::Usage)?,
                },
            };
            let p = client.client()?.acl_policy_put(&name, &req).await?;
            if client.output == Output::Json {
                print_json(&serde_json::to_value(&p).unwrap_or_default());
            } else {
                out!("policy {} has {} rules", p.name, p.rules.len());
            }
        }
        AclCommand::Policy(PolicyCommand::List { client }) => {
            let policies = client.client()?.acl_policies().await?;
            if client.output == Output::Json {
                print_json(&serde_json::to_value(&policies).unwrap_or_default());
            } else {
                for p in policies {
                    out!(
                        "{}: {}",
                        p.name,
                        serde_json::to_string(&p.rules).unwrap_or_default()
                    );
                }
            }
        }
        AclCommand::Policy(PolicyCommand::Delete { name, client }) => {
            client.client()?.acl_policy_delete(&name).await?;
            out!("deleted policy {name}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_parse_from_their_short_form_and_mistakes_say_what_to_write() {
        let kv = parse_rule("kv:app/:write").expect("kv");
        assert_eq!(
            kv.resource,
            Resource::Kv {
                prefix: "app/".into()
            }
        );
        assert_eq!(kv.access, Access::Write);
        assert_eq!(
            parse_rule("kv::read").expect("all keys").resource,
            Resource::Kv {
                prefix: String::new()
            }
        );
        assert_eq!(
            parse_rule("kv:a:b:read").expect("colon in prefix").resource,
            Resource::Kv {
                prefix: "a:b".into()
            }
        );
        assert_eq!(
            parse_rule("config:*:write").expect("config").resource,
            Resource::Config { kind: None }
        );
        assert_eq!(
            parse_rule("config:remote-peers:read")
                .expect("kind")
                .resource,
            Resource::Config {
                kind: Some("remote-peers".into())
            }
        );
        assert_eq!(
            parse_rule("cluster:admin").expect("cluster").access,
            Access::Admin
        );
        for bad in [
            "kv:app/",
            "cluster:sudo",
            "cluster:x:read",
            "planets:read",
            "read",
            "kv:read",
        ] {
            let e = parse_rule(bad).expect_err(bad);
            assert!(e.contains("RESOURCE[:SCOPE]:ACCESS"), "{e}");
        }
    }
}
