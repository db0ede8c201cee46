//! A CA and the certificates it signs, for `conclave tls ca create` and `conclave tls cert
//! create`: enough for an operator to give every node and client a certificate in three
//! commands, no OpenSSL needed. Keys are ECDSA P-256 (rcgen's default), written owner-only;
//! an existing file is never overwritten.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

use crate::TlsError;

/// The files one `create` wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn issue_err(e: rcgen::Error) -> TlsError {
    TlsError::Issue(e.to_string())
}

fn validity(params: &mut CertificateParams, days: u32) {
    let now = time::OffsetDateTime::now_utc();
    // An hour's grace for clocks a little behind the issuer's.
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(i64::from(days));
}

/// Create `file` (never replacing one), readable by its owner only when `private`.
fn write_new(file: &Path, contents: &str, private: bool) -> Result<(), TlsError> {
    use std::os::unix::fs::OpenOptionsExt;
    let werr = |source| TlsError::Write {
        path: file.to_path_buf(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        // A planted symlink is not followed to overwrite its target.
        .custom_flags(libc::O_NOFOLLOW)
        .mode(if private { 0o600 } else { 0o644 })
        .open(file)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                TlsError::Setting(format!(
                    "{} exists already; remove it first or pick another directory or --name",
                    file.display()
                ))
            } else {
                werr(e)
            }
        })?;
    f.write_all(contents.as_bytes()).map_err(werr)?;
    f.sync_all().map_err(werr)
}

fn ensure_dir(dir: &Path) -> Result<(), TlsError> {
    std::fs::create_dir_all(dir).map_err(|source| TlsError::Write {
        path: dir.to_path_buf(),
        source,
    })
}

/// `dir/ca.pem` and `dir/ca-key.pem`: a new CA valid for `days`.
pub fn create_ca(dir: &Path, days: u32) -> Result<Written, TlsError> {
    ensure_dir(dir)?;
    let out = Written {
        cert: dir.join("ca.pem"),
        key: dir.join("ca-key.pem"),
    };
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, "conclave CA");
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut params, days);
    let key = KeyPair::generate().map_err(issue_err)?;
    let cert = params.self_signed(&key).map_err(issue_err)?;
    write_new(&out.key, &key.serialize_pem(), true)?;
    write_new(&out.cert, &cert.pem(), false)?;
    Ok(out)
}

/// What one certificate names and how long it lasts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertRequest {
    /// The file stem (`N.pem`, `N-key.pem`) and the certificate's common name.
    pub name: String,
    pub ips: Vec<IpAddr>,
    pub dns: Vec<String>,
    pub days: u32,
}

/// `dir/NAME.pem` and `dir/NAME-key.pem`, signed by `dir/ca.pem`, good as a server's and a
/// client's certificate. `localhost` and `127.0.0.1` are always named, so that the CLI on a
/// node reaches its own agent.
pub fn create_cert(dir: &Path, req: &CertRequest) -> Result<Written, TlsError> {
    if req.name.is_empty()
        || !req
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        || req.name.starts_with('.')
    {
        return Err(TlsError::Setting(format!(
            "--name {:?} cannot be a file name: use letters, digits, '-', '_' and '.'",
            req.name
        )));
    }
    let ca_file = dir.join("ca.pem");
    let ca_key_file = dir.join("ca-key.pem");
    let read = |p: &Path| {
        std::fs::read_to_string(p).map_err(|source| TlsError::Read {
            path: p.to_path_buf(),
            source,
        })
    };
    let ca_pem = read(&ca_file)?;
    let ca_key = KeyPair::from_pem(&read(&ca_key_file)?).map_err(|e| TlsError::BadPem {
        path: ca_key_file.clone(),
        detail: e.to_string(),
    })?;
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key).map_err(|e| TlsError::BadPem {
        path: ca_file.clone(),
        detail: e.to_string(),
    })?;

    let mut names: Vec<String> = vec!["localhost".into()];
    names.extend(req.dns.iter().cloned());
    let mut ips = vec![IpAddr::from([127, 0, 0, 1])];
    ips.extend(req.ips.iter().copied());
    names.extend(ips.iter().map(IpAddr::to_string));
    names.dedup();
    let mut params = CertificateParams::new(names).map_err(|e| {
        TlsError::Setting(format!("--dns names a host that is not a DNS name: {e}"))
    })?;
    params.subject_alt_names.dedup();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, req.name.as_str());
    params.distinguished_name = dn;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, req.days);
    let key = KeyPair::generate().map_err(issue_err)?;
    let cert = params.signed_by(&key, &issuer).map_err(issue_err)?;
    let out = Written {
        cert: dir.join(format!("{}.pem", req.name)),
        key: dir.join(format!("{}-key.pem", req.name)),
    };
    write_new(&out.key, &key.serialize_pem(), true)?;
    write_new(&out.cert, &cert.pem(), false)?;
    Ok(out)
}
