//! The simulated disk keeps what was synced and, of the rest, a prefix or nothing.

use super::*;

fn root() -> PathBuf {
    PathBuf::from("/sim")
}

fn write(disk: &PowerLossDisk, name: &str, bytes: &[u8], sync: bool) {
    let path = root().join(name);
    let f = disk.open(&path, OpenMode::CreateOrKeep).unwrap();
    let len = disk.read(&path).unwrap().len() as u64;
    f.write_all_at(bytes, len).unwrap();
    if sync {
        f.sync_data().unwrap();
        disk.sync_dir(&root()).unwrap();
    }
}

#[test]
fn synced_data_survives_every_cut() {
    for seed in 0..200 {
        let disk = PowerLossDisk::new(&root(), seed);
        write(&disk, "a", b"durable", true);
        write(&disk, "a", b"-volatile", false);
        let after = disk.power_cut();
        let got = after.read(&root().join("a")).unwrap();
        assert!(got.starts_with(b"durable"), "seed {seed}: {got:?}");
        assert!(
            b"durable-volatile".starts_with(&got),
            "seed {seed}: {got:?}"
        );
    }
}

#[test]
fn unsynced_data_is_sometimes_lost_and_sometimes_torn() {
    let (mut lost, mut kept, mut torn) = (0, 0, 0);
    for seed in 0..200 {
        let disk = PowerLossDisk::new(&root(), seed);
        write(&disk, "a", b"x", true);
        write(&disk, "a", b"0123456789", false);
        match disk.power_cut().read(&root().join("a")).unwrap().len() {
            1 => lost += 1,
            11 => kept += 1,
            _ => torn += 1,
        }
    }
    assert!(lost > 0 && kept > 0 && torn > 0, "{lost} {kept} {torn}");
}

#[test]
fn a_file_never_synced_into_its_directory_may_vanish() {
    let mut vanished = 0;
    for seed in 0..100 {
        let disk = PowerLossDisk::new(&root(), seed);
        let f = disk
            .open(&root().join("new"), OpenMode::CreateEmpty)
            .unwrap();
        f.write_all_at(b"data", 0).unwrap();
        f.sync_data().unwrap();
        let after = disk.power_cut();
        match after.read(&root().join("new")) {
            Ok(b) => assert_eq!(b, b"data"),
            Err(e) => {
                assert_eq!(e.kind(), io::ErrorKind::NotFound);
                vanished += 1;
            }
        }
    }
    assert!(vanished > 0);
}

#[test]
fn a_rename_is_whole_or_not_at_all() {
    for seed in 0..100 {
        let disk = PowerLossDisk::new(&root(), seed);
        crate::fsutil::write_atomic_on(&disk, &root().join("vote"), b"old").unwrap();
        let tmp = root().join("vote.tmp");
        let f = disk.open(&tmp, OpenMode::CreateEmpty).unwrap();
        f.write_all_at(b"new", 0).unwrap();
        f.sync_data().unwrap();
        disk.rename(&tmp, &root().join("vote")).unwrap();
        let got = disk.power_cut().read(&root().join("vote")).unwrap();
        assert!(got == b"old" || got == b"new", "seed {seed}: {got:?}");
    }
}

#[test]
fn nothing_works_after_the_cut() {
    let disk = PowerLossDisk::new(&root(), 1);
    let f = disk.open(&root().join("a"), OpenMode::CreateEmpty).unwrap();
    disk.cut_after(1);
    f.write_all_at(b"one", 0).unwrap();
    assert!(f.sync_data().is_err());
    assert!(disk.is_cut());
    assert!(f.write_all_at(b"two", 3).is_err());
    assert!(disk.read(&root().join("a")).is_err());
    // The cut came before the sync: the write may or may not have made it.
    let got = disk.power_cut().read(&root().join("a")).unwrap_or_default();
    assert!(b"one".starts_with(&got));
}
