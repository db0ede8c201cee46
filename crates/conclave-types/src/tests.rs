//! Wire round trips of the HTTP types.

use super::*;

#[test]
fn error_codes_keep_their_json_spelling() {
    for code in ErrorCode::ALL {
        let json = serde_json::to_string(&code).unwrap();
        assert_eq!(json, format!("\"{}\"", code.as_str()), "{code:?}");
        let back: ErrorCode = serde_json::from_str(&json).unwrap();
        assert_eq!(back, code);
    }
    // The contract: these strings are what clients match on.
    assert_eq!(
        ErrorCode::UnsafeMembershipChange.as_str(),
        "unsafe_membership_change"
    );
    assert_eq!(ErrorCode::CasConflict.as_str(), "cas_conflict");
    assert_eq!(ErrorCode::NoLeader.as_str(), "no_leader");
}

#[test]
fn an_unknown_code_reads_as_unknown_and_keeps_the_message() {
    let body: ErrorBody =
        serde_json::from_str(r#"{"error":{"code":"from_the_future","message":"m","hint":"h"}}"#)
            .unwrap();
    assert_eq!(body.error.code, ErrorCode::Unknown);
    assert_eq!(body.error.message, "m");
}

#[test]
fn a_health_answer_round_trips_with_and_without_a_degradation() {
    for degraded in [None, Some("cut off from gossip".to_string())] {
        let h = HealthResponse {
            status: if degraded.is_some() { "degraded" } else { "ok" }.into(),
            node_id: 3,
            leader_id: Some(1),
            applied_index: 9,
            degraded: degraded.clone(),
        };
        let json = serde_json::to_string(&h).unwrap();
        assert_eq!(json.contains("degraded\":"), degraded.is_some(), "{json}");
        let back: HealthResponse = serde_json::from_str(&json).unwrap();
        assert_eq!(back.degraded, degraded);
        assert_eq!((back.status, back.node_id), (h.status, 3));
    }
}

#[test]
fn a_tls_status_round_trips_with_and_without_a_reload_error() {
    let mut tls = TlsStatus {
        cert_file: "/etc/conclave/node-1.pem".into(),
        subject: "CN=node-1".into(),
        dns_names: vec!["localhost".into()],
        ip_addresses: vec!["127.0.0.1".into()],
        not_before: 1_700_000_000,
        not_after: 1_800_000_000,
        expires_in_seconds: 86_400,
        sha256: "ab".repeat(32),
        verify_incoming: true,
        loaded_at: 1_750_000_000,
        reload_error: None,
    };
    let text = serde_json::to_string(&tls).expect("encode");
    assert!(!text.contains("reload_error"), "{text}");
    assert_eq!(
        serde_json::from_str::<TlsStatus>(&text).expect("decode"),
        tls
    );
    tls.reload_error = Some("cannot read /etc/conclave/node-1-key.pem".into());
    let text = serde_json::to_string(&tls).expect("encode");
    assert_eq!(
        serde_json::from_str::<TlsStatus>(&text).expect("decode"),
        tls
    );
}

#[test]
fn member_state_names_are_the_wire_names() {
    for state in MemberState::ALL {
        let wire = serde_json::to_string(&state).expect("encodes");
        assert_eq!(wire, format!("\"{}\"", state.as_str()));
    }
}

#[test]
fn an_error_body_round_trips_with_every_optional_field_empty_and_full() {
    use ipam::{AddressHolder, ImportConflict, ImportReport, NetworkUsage};
    let empty = ErrorDetail {
        code: ErrorCode::NetworkFull,
        message: "m".into(),
        hint: "h".into(),
        current_revision: None,
        violations: None,
        compacted_revision: None,
        holder: None,
        usage: None,
        conflicts: None,
        request_id: None,
    };
    let holder = AddressHolder {
        allocation_id: "alloc-4".into(),
        address: "fd00::1".parse().unwrap(),
        hostname: Some("web".into()),
    };
    let full = ErrorDetail {
        current_revision: Some(7),
        violations: Some(vec![Violation {
            path: "/a".into(),
            message: "m".into(),
        }]),
        compacted_revision: Some(3),
        holder: Some(holder.clone()),
        // A /64: counts past a double's exact range stay exact.
        usage: Some(NetworkUsage {
            total: 1 << 64,
            allocated: 3,
            reserved: 1,
            free: (1 << 64) - 4,
            utilisation_percent: 0.0,
        }),
        conflicts: Some(vec![
            ImportConflict {
                row: 2,
                code: ErrorCode::AddressTaken,
                message: "m".into(),
                holder: Some(holder),
            },
            ImportConflict {
                row: 3,
                code: ErrorCode::NetworkNotFound,
                message: "m".into(),
                holder: None,
            },
        ]),
        request_id: Some("req-7f3a".into()),
        ..empty.clone()
    };
    for detail in [empty, full] {
        let body = ErrorBody { error: detail };
        let json = serde_json::to_string(&body).unwrap();
        assert_eq!(
            serde_json::from_str::<ErrorBody>(&json).unwrap(),
            body,
            "{json}"
        );
    }
    let empty_json = r#"{"error":{"code":"network_full","message":"m","hint":"h"}}"#;
    assert!(serde_json::from_str::<ErrorBody>(empty_json).is_ok());
    assert!(
        serde_json::to_string(&NetworkUsage {
            total: 1 << 64,
            ..NetworkUsage::default()
        })
        .unwrap()
        .contains("\"total\":18446744073709551616")
    );
    for report in [
        ImportReport {
            created: 0,
            existing: 2,
            allocation_ids: Vec::new(),
        },
        ImportReport {
            created: 1,
            existing: 0,
            allocation_ids: vec!["alloc-9".into()],
        },
    ] {
        let json = serde_json::to_string(&report).unwrap();
        assert_eq!(serde_json::from_str::<ImportReport>(&json).unwrap(), report);
    }
}
