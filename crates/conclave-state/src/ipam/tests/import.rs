//! Import: all rows or none, conflicts listed, a repeat changes nothing.

use super::*;

fn row(network: &str, address: &str, hostname: Option<&str>) -> ImportRow {
    ImportRow {
        network: network.into(),
        address: ip(address),
        hostname: hostname.map(Into::into),
        owner: None,
        labels: BTreeMap::new(),
    }
}

fn import(state: &mut State, rows: Vec<ImportRow>) -> Result<(Vec<Allocation>, u64), IpamRefusal> {
    run(state, IpamCommand::Import { rows }).map(|a| match a {
        IpamAnswer::Imported { created, existing } => (created, existing),
        other => panic!("not an import: {other:?}"),
    })
}

#[test]
fn an_import_takes_every_row_and_a_repeat_finds_them_existing() {
    let mut s = State::new();
    create(&mut s, spec("lan", "10.0.0.0/24"));
    let rows = vec![
        row("lan", "10.0.0.5", Some("db-1")),
        row("lan", "10.0.0.1", None),
        row("lan", "10.0.0.6", Some("db-2")),
    ];
    let (created, existing) = import(&mut s, rows.clone()).unwrap();
    assert_eq!(existing, 0);
    let got: Vec<_> = created.iter().map(|a| a.address).collect();
    assert_eq!(got, [ip("10.0.0.5"), ip("10.0.0.1"), ip("10.0.0.6")]);
    assert_eq!(s.ipam().usage("lan").unwrap().allocated, 3);
    // Automatic allocation skips what was imported.
    assert_eq!(one(&mut s, request("lan")), ip("10.0.0.2"));
    let revision = s.revision();
    assert_eq!(import(&mut s, rows).unwrap(), (Vec::new(), 3));
    assert_eq!(s.revision(), revision, "a repeated import changes nothing");
    // A hostname already holding the address is the same allocation, once.
    assert_eq!(
        import(
            &mut s,
            vec![
                row("lan", "10.0.0.5", Some("db-1")),
                row("lan", "10.0.0.9", None)
            ]
        )
        .unwrap()
        .1,
        1
    );
}

#[test]
fn one_conflicting_row_refuses_the_whole_import_and_every_conflict_is_listed() {
    let mut s = State::new();
    create(&mut s, spec("lan", "10.0.0.0/24"));
    let held = one(
        &mut s,
        AllocateRequest {
            hostname: Some("web".into()),
            ..request("lan")
        },
    );
    let before = s.ipam().allocation_count();
    let revision = s.revision();
    let refused = import(
        &mut s,
        vec![
            row("lan", "10.0.0.20", Some("ok")),
            row("lan", &held.to_string(), Some("other")),
            row("lan", "10.0.0.21", Some("web")),
            row("lan", "10.0.0.20", Some("again")),
            row("lan", "10.0.0.22", Some("ok")),
            row("wan", "10.0.0.23", None),
            row("lan", "10.0.0.255", None),
            row("lan", "10.0.1.1", None),
        ],
    );
    let Err(IpamRefusal::ImportConflicts { conflicts, total }) = refused else {
        panic!("not refused: {refused:?}");
    };
    assert_eq!(total, 7);
    let rows: Vec<u32> = conflicts.iter().map(|c| c.row).collect();
    assert_eq!(rows, [1, 2, 3, 4, 5, 6, 7]);
    assert!(matches!(
        conflicts[0].refusal,
        IpamRefusal::AddressTaken { .. }
    ));
    assert!(matches!(
        conflicts[1].refusal,
        IpamRefusal::HostnameTaken { .. }
    ));
    assert!(matches!(
        &conflicts[2].refusal,
        IpamRefusal::RepeatedInImport { field, earlier_row: 0, .. } if field == "address"
    ));
    assert!(matches!(
        &conflicts[3].refusal,
        IpamRefusal::RepeatedInImport { field, earlier_row: 0, .. } if field == "hostname"
    ));
    assert!(matches!(
        conflicts[4].refusal,
        IpamRefusal::NetworkNotFound { .. }
    ));
    assert!(matches!(
        conflicts[5].refusal,
        IpamRefusal::AddressNotUsable { .. }
    ));
    assert!(matches!(
        conflicts[6].refusal,
        IpamRefusal::AddressOutside { .. }
    ));
    assert_eq!(s.ipam().allocation_count(), before, "nothing was imported");
    assert!(s.ipam().allocation_at("lan", ip("10.0.0.20")).is_none());
    assert_eq!(s.revision(), revision);
}

#[test]
fn an_import_is_bounded_and_its_rows_are_checked_like_requests() {
    let mut s = State::new();
    create(&mut s, spec("lan", "10.0.0.0/16"));
    assert!(matches!(
        import(&mut s, Vec::new()),
        Err(IpamRefusal::Invalid { .. })
    ));
    let too_many = (0..=MAX_IMPORT as u32)
        .map(|i| {
            row(
                "lan",
                &format!("10.0.{}.{}", 1 + i / 250, 1 + i % 250),
                None,
            )
        })
        .collect();
    assert!(matches!(
        import(&mut s, too_many),
        Err(IpamRefusal::Invalid { .. })
    ));
    let bad = import(
        &mut s,
        vec![
            row("lan", "10.0.0.1", None),
            row("lan", "10.0.0.2", Some("no spaces")),
        ],
    );
    assert!(
        matches!(&bad, Err(IpamRefusal::Invalid { field, .. }) if field == "row 1: hostname"),
        "{bad:?}"
    );
    let conflicts = (0..MAX_IMPORT as u32)
        .map(|i| {
            row(
                "nowhere",
                &format!("10.0.{}.{}", 1 + i / 250, 1 + i % 250),
                None,
            )
        })
        .collect();
    let Err(IpamRefusal::ImportConflicts { conflicts, total }) = import(&mut s, conflicts) else {
        panic!("not refused");
    };
    assert_eq!(
        (conflicts.len(), total),
        (MAX_IMPORT_CONFLICTS, MAX_IMPORT as u64)
    );
}
