//! A file sink's file: what it holds now, and writing it so a reader never sees a partial
//! or empty file.

use std::io::Write;
use std::path::Path;

use crate::render::Format;

/// The file's current content and the count it holds, when it was written by a sink of the
/// same format (so a restart does not rewrite an identical file).
pub(crate) fn existing(path: &Path, format: Format) -> Option<(Vec<u8>, usize)> {
    let bytes = std::fs::read(path).ok()?;
    let text = std::str::from_utf8(&bytes).ok()?;
    let count = match format {
        Format::Json => serde_json::from_str::<Vec<serde_json::Value>>(text)
            .ok()?
            .len(),
        Format::Lines => text.lines().filter(|l| !l.trim().is_empty()).count(),
        Format::Count => text.trim().parse().ok()?,
        Format::Env => {
            let (_, list) = text.trim().split_once('=')?;
            list.split(',').filter(|p| !p.is_empty()).count()
        }
    };
    Some((bytes, count))
}

/// Write atomically: temp file in the same directory, fsync, rename, fsync the directory.
/// The temp file gets a fresh random name and is created exclusively (`O_EXCL`), so a file
/// or symlink planted at a predictable name is never written through.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let file_name = path
        .file_name()
        .map(|f| f.to_string_lossy())
        .unwrap_or_default();
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{file_name}."))
        .suffix(".tmp")
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    // Other processes read what is published (a service's peer list).
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_the_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/peers.txt");
        write_atomically(&path, b"a:1\n").unwrap();
        write_atomically(&path, b"a:1\nb:2\n").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"a:1\nb:2\n");
        assert_eq!(existing(&path, Format::Lines).map(|e| e.1), Some(2));
        // No temp files are left behind.
        assert_eq!(
            std::fs::read_dir(dir.path().join("sub")).unwrap().count(),
            1
        );
    }

    #[test]
    fn a_planted_symlink_at_the_old_temp_name_is_never_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        let path = dir.path().join("peers.txt");
        // The name the temp file used to have, and a few guesses around it.
        for name in [
            format!(".peers.txt.tmp-{}", std::process::id()),
            ".peers.txt.tmp".to_string(),
        ] {
            std::os::unix::fs::symlink(&victim, dir.path().join(name)).unwrap();
        }
        write_atomically(&path, b"a:1\n").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert_eq!(std::fs::read(&path).unwrap(), b"a:1\n");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644, "readers of the published file can read it");
    }
}
