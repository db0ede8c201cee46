use std::path::Path;
use std::sync::Arc;

use crate::issue::{CertRequest, create_ca, create_cert};
use crate::{ClientFiles, Reloadable, TlsError, TlsFiles, client_config};

fn request(name: &str) -> CertRequest {
    CertRequest {
        name: name.into(),
        ips: vec!["10.0.0.1".parse().expect("ip")],
        dns: vec!["node-a.example".into()],
        days: 30,
    }
}

fn files(dir: &Path, name: &str, verify_incoming: bool) -> TlsFiles {
    TlsFiles {
        ca_file: Some(dir.join("ca.pem")),
        cert_file: dir.join(format!("{name}.pem")),
        key_file: dir.join(format!("{name}-key.pem")),
        verify_incoming,
    }
}

fn ca_with(names: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    create_ca(dir.path(), 365).expect("ca");
    for n in names {
        create_cert(dir.path(), &request(n)).expect("cert");
    }
    dir
}

#[test]
fn an_issued_certificate_loads_and_names_what_was_asked() {
    let dir = ca_with(&["node-a"]);
    let tls = Reloadable::load(files(dir.path(), "node-a", true)).expect("load");
    let info = tls.current().info.clone();
    assert!(info.subject.contains("node-a"), "{info:?}");
    assert!(info.dns_names.contains(&"node-a.example".to_string()));
    assert!(info.dns_names.contains(&"localhost".to_string()));
    assert!(info.ip_addresses.contains(&"10.0.0.1".parse().expect("ip")));
    assert!(
        info.ip_addresses
            .contains(&"127.0.0.1".parse().expect("ip"))
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    assert!(info.not_after > now + 29 * 86_400 && info.not_after < now + 31 * 86_400);
    assert_eq!(info.sha256.len(), 64);
}

#[test]
fn keys_are_owner_only_and_nothing_is_overwritten() {
    use std::os::unix::fs::PermissionsExt;
    let dir = ca_with(&["node-a"]);
    for key in ["ca-key.pem", "node-a-key.pem"] {
        let mode = std::fs::metadata(dir.path().join(key))
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{key}");
    }
    let before = std::fs::read(dir.path().join("node-a.pem")).expect("read");
    let err = create_cert(dir.path(), &request("node-a")).expect_err("exists");
    assert!(err.to_string().contains("exists already"), "{err}");
    assert_eq!(
        before,
        std::fs::read(dir.path().join("node-a.pem")).expect("read")
    );
    let err = create_ca(dir.path(), 10).expect_err("exists");
    assert!(
        err.to_string().contains("ca-key.pem exists already"),
        "{err}"
    );
    for bad in ["", "../x", "a/b", ".hidden"] {
        let err = create_cert(dir.path(), &request(bad)).expect_err(bad);
        assert!(err.to_string().contains("cannot be a file name"), "{err}");
    }
}

#[test]
fn a_planted_symlink_is_not_followed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "keep me").expect("write");
    std::os::unix::fs::symlink(&victim, dir.path().join("ca-key.pem")).expect("symlink");
    create_ca(dir.path(), 10).expect_err("symlink in the way");
    assert_eq!(std::fs::read_to_string(&victim).expect("read"), "keep me");
}

#[test]
fn mistakes_in_the_files_name_the_file() {
    let dir = ca_with(&["node-a", "node-b"]);
    let d = dir.path();

    let mut swapped = files(d, "node-a", true);
    swapped.key_file = d.join("node-b-key.pem");
    match Reloadable::load(swapped) {
        Err(e @ TlsError::KeyMismatch { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains("node-a.pem") && text.contains("node-b-key.pem"),
                "{text}"
            );
        }
        other => panic!("expected a key mismatch, got {other:?}"),
    }

    let other_ca = ca_with(&[]);
    let mut foreign = files(d, "node-a", true);
    foreign.ca_file = Some(other_ca.path().join("ca.pem"));
    match Reloadable::load(foreign) {
        Err(e @ TlsError::NotSignedByCa { .. }) => {
            assert!(e.to_string().contains("is not signed by the CA"), "{e}");
        }
        other => panic!("expected a foreign CA, got {other:?}"),
    }

    let mut missing = files(d, "node-a", true);
    missing.cert_file = d.join("nope.pem");
    let err = Reloadable::load(missing).expect_err("missing");
    assert!(err.to_string().contains("nope.pem"), "{err}");

    std::fs::write(d.join("empty.pem"), "").expect("write");
    let mut empty = files(d, "node-a", true);
    empty.cert_file = d.join("empty.pem");
    assert!(matches!(
        Reloadable::load(empty),
        Err(TlsError::NoCertificate { .. })
    ));

    let mut no_key = files(d, "node-a", true);
    no_key.key_file = d.join("node-a.pem");
    assert!(matches!(
        Reloadable::load(no_key),
        Err(TlsError::NoKey { .. })
    ));

    let mut no_ca = files(d, "node-a", true);
    no_ca.ca_file = None;
    let err = Reloadable::load(no_ca).expect_err("verify without CA");
    assert!(err.to_string().contains("needs tls.ca_file"), "{err}");
}

#[test]
fn a_reload_takes_new_files_and_keeps_the_old_ones_when_the_new_are_bad() {
    let dir = ca_with(&["node-a"]);
    let d = dir.path();
    let tls = Reloadable::load(files(d, "node-a", true)).expect("load");
    let first = tls.current().info.sha256.clone();
    assert!(tls.reload_if_changed().is_none(), "nothing changed yet");

    // Rotate: a new certificate and key under the same names.
    let staging = d.join("staging");
    std::fs::create_dir(&staging).expect("dir");
    std::fs::copy(d.join("ca.pem"), staging.join("ca.pem")).expect("copy");
    std::fs::copy(d.join("ca-key.pem"), staging.join("ca-key.pem")).expect("copy");
    create_cert(&staging, &request("node-a")).expect("cert");
    std::fs::rename(staging.join("node-a.pem"), d.join("node-a.pem")).expect("mv");
    std::fs::rename(staging.join("node-a-key.pem"), d.join("node-a-key.pem")).expect("mv");
    let rotated = tls.reload_if_changed().expect("changed").expect("loads");
    assert_ne!(rotated.info.sha256, first);
    assert_eq!(tls.current().info.sha256, rotated.info.sha256);

    // A half-written key: the reload fails, the rotated material stays.
    std::fs::write(d.join("node-a-key.pem"), "-----BEGIN PRIV").expect("write");
    let err = tls
        .reload_if_changed()
        .expect("changed")
        .expect_err("bad key");
    assert!(err.to_string().contains("node-a-key.pem"), "{err}");
    assert_eq!(tls.current().info.sha256, rotated.info.sha256);
    assert!(
        tls.last_error()
            .is_some_and(|e| e.contains("node-a-key.pem"))
    );
    assert!(
        tls.reload_if_changed().is_none(),
        "reported once per change"
    );
}

#[test]
fn client_files_must_come_in_pairs_and_need_a_ca() {
    let dir = ca_with(&["cli"]);
    let d = dir.path();
    let err = client_config(&ClientFiles::default()).expect_err("no CA");
    assert!(err.to_string().contains("--ca-file"), "{err}");
    let half = ClientFiles {
        ca_file: Some(d.join("ca.pem")),
        cert_file: Some(d.join("cli.pem")),
        key_file: None,
    };
    let err = client_config(&half).expect_err("half");
    assert!(err.to_string().contains("--key-file"), "{err}");
    let whole = ClientFiles {
        key_file: Some(d.join("cli-key.pem")),
        ..half
    };
    client_config(&whole).expect("client config");
}

/// One TLS exchange over loopback: the server's current material against a client config.
type AnyError = Box<dyn std::error::Error + Send + Sync>;

async fn exchange(
    server: &Arc<Reloadable>,
    client: rustls::ClientConfig,
) -> Result<Vec<u8>, AnyError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let acceptor = server.acceptor();
    let serve = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await?;
        let mut tls = acceptor.accept(tcp).await?;
        tls.write_all(b"hello").await?;
        tls.shutdown().await
    });
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = rustls::pki_types::ServerName::try_from("localhost")?;
    let mut tls = connector.connect(name, tcp).await?;
    let mut got = Vec::new();
    let read = tls.read_to_end(&mut got).await;
    // The server's side first: its refusal is the interesting error.
    serve.await??;
    read?;
    Ok(got)
}

#[tokio::test]
async fn mutual_tls_admits_only_clients_with_a_certificate_from_the_ca() {
    let dir = ca_with(&["node-a", "cli"]);
    let d = dir.path();
    let server = Arc::new(Reloadable::load(files(d, "node-a", true)).expect("load"));
    let with_cert = client_config(&ClientFiles {
        ca_file: Some(d.join("ca.pem")),
        cert_file: Some(d.join("cli.pem")),
        key_file: Some(d.join("cli-key.pem")),
    })
    .expect("client");
    assert_eq!(exchange(&server, with_cert).await.expect("mTLS"), b"hello");

    let without = client_config(&ClientFiles {
        ca_file: Some(d.join("ca.pem")),
        ..ClientFiles::default()
    })
    .expect("client");
    assert!(exchange(&server, without).await.is_err(), "no client cert");

    // The forwarding client follows the node's own material.
    let forwarding = server.client_config().expect("forwarding");
    assert_eq!(
        exchange(&server, forwarding).await.expect("forward"),
        b"hello"
    );

    // A client trusting another CA refuses the server.
    let other = ca_with(&[]);
    let foreign = client_config(&ClientFiles {
        ca_file: Some(other.path().join("ca.pem")),
        ..ClientFiles::default()
    })
    .expect("client");
    assert!(exchange(&server, foreign).await.is_err(), "foreign CA");
}
