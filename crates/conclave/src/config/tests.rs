use super::*;

#[test]
fn file_type_errors_name_the_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, "log_level = \"info\"\nmax_value_bytes = \"big\"\n").unwrap();
    let err = load(Some(&path), &AgentFlags::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("c.toml"), "{err}");
    assert!(err.contains("line 2"), "{err}");
    assert!(err.contains("max_value_bytes"), "{err}");
}

#[test]
fn flags_override_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        "max_value_bytes = 10\nmax_key_bytes = 20\n[raft]\nheartbeat_ms = 50\n",
    )
    .unwrap();
    let flags = AgentFlags {
        max_value_bytes: Some(99),
        ..Default::default()
    };
    let c = load(Some(&path), &flags).unwrap();
    assert_eq!(c.max_value_bytes, 99);
    assert_eq!(c.max_key_bytes, 20);
    assert_eq!(c.raft.heartbeat_ms, 50);
    assert_eq!(c.http_addr.port(), 7400);
}

#[test]
fn tag_flags_add_to_the_files_tags() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, "[tags]\nzone = \"a\"\nrack = \"1\"\n").unwrap();
    let flags = AgentFlags {
        tags: vec!["rack=2".into(), "tier=db".into()],
        ..Default::default()
    };
    let c = load(Some(&path), &flags).unwrap();
    let tags: Vec<_> = c.tags.0.iter().map(|(k, v)| format!("{k}={v}")).collect();
    assert_eq!(tags, ["rack=2", "tier=db", "zone=a"]);
    let flags = AgentFlags {
        tags: vec!["nonsense".into()],
        ..Default::default()
    };
    let err = load(Some(&path), &flags).unwrap_err().to_string();
    assert!(err.contains("--tag \"nonsense\""), "{err}");
}

#[test]
fn inconsistent_timings_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        "[raft]\nheartbeat_ms = 500\nelection_timeout_min_ms = 400\n",
    )
    .unwrap();
    let err = load(Some(&path), &AgentFlags::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("election_timeout_min_ms"), "{err}");
}

#[test]
fn rpc_beyond_loopback_needs_a_token_or_insecure() {
    let anywhere: std::net::SocketAddr = "0.0.0.0:7401".parse().unwrap();
    let bare = AgentFlags {
        rpc_addr: Some(anywhere),
        ..Default::default()
    };
    let e = load(None, &bare).unwrap_err().to_string();
    assert!(
        e.contains("without a cluster token") && e.contains("--insecure"),
        "{e}"
    );
    let insecure = AgentFlags {
        insecure: true,
        ..bare.clone()
    };
    assert!(load(None, &insecure).is_ok());
    let with_token = AgentFlags {
        cluster_token: Some(conclave_types::Secret::new("s3cret")),
        ..bare.clone()
    };
    assert!(load(None, &with_token).is_ok());
    let loopback = AgentFlags {
        rpc_addr: Some("127.0.0.1:7401".parse().unwrap()),
        ..Default::default()
    };
    assert!(load(None, &loopback).is_ok());
}

#[test]
fn the_cluster_token_comes_from_a_file_never_from_two_places() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "file-held-secret\n").unwrap();
    let flags = AgentFlags {
        cluster_token_file: Some(token.clone()),
        ..AgentFlags::default()
    };
    let config = load(None, &flags).unwrap();
    assert_eq!(
        config.cluster_token.as_ref().map(|s| s.expose().to_owned()),
        Some("file-held-secret".to_owned())
    );
    let printed = toml::to_string(&config).unwrap();
    assert!(!printed.contains("file-held-secret"), "{printed}");

    let both = AgentFlags {
        cluster_token: Some(conclave_types::Secret::new("flag-secret")),
        cluster_token_file: Some(token),
        ..AgentFlags::default()
    };
    let err = load(None, &both).unwrap_err().to_string();
    assert!(err.contains("keep one"), "{err}");
    assert!(!err.contains("secret"), "{err}");

    let missing = AgentFlags {
        cluster_token_file: Some(dir.path().join("absent")),
        ..AgentFlags::default()
    };
    let err = format!("{:#}", load(None, &missing).unwrap_err());
    assert!(err.contains("absent"), "{err}");
}

#[test]
fn http_beyond_loopback_needs_tls_and_acls_or_insecure() {
    let dir = tempfile::tempdir().unwrap();
    let anywhere: std::net::SocketAddr = "0.0.0.0:7400".parse().unwrap();
    let flags = AgentFlags {
        http_addr: Some(anywhere),
        ..Default::default()
    };
    let e = load(None, &flags).unwrap_err().to_string();
    assert!(
        e.contains("without TLS and ACLs") && e.contains("--insecure") && e.contains("[acl]"),
        "{e}"
    );
    let file = dir.path().join("c.toml");
    let write = |text: &str| std::fs::write(&file, text).unwrap();
    write("[acl]\nenabled = true\n");
    let e = load(Some(&file), &flags).unwrap_err().to_string();
    assert!(e.contains("without TLS:"), "{e}");
    write("[tls]\ncert_file = \"n.pem\"\nkey_file = \"n-key.pem\"\n");
    let e = load(Some(&file), &flags).unwrap_err().to_string();
    assert!(e.contains("without ACLs:"), "{e}");
    write("[tls]\ncert_file = \"n.pem\"\nkey_file = \"n-key.pem\"\n[acl]\nenabled = true\n");
    assert!(load(Some(&file), &flags).is_ok());
    let insecure = AgentFlags {
        insecure: true,
        ..flags.clone()
    };
    assert!(load(None, &insecure).is_ok());
}
