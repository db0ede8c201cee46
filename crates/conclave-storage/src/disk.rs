//! The file-system seam: every byte the stores keep goes through a [`Disk`].
//!
//! Why a seam: durability is a claim about what survives a power cut, and a test cannot cut
//! the power of the machine it runs on (`kill -9` leaves the page cache, so it never tests an
//! fsync). [`OsDisk`] is the real file system; [`crate::powerloss::PowerLossDisk`] keeps
//! only what was synced and, on a simulated power cut, a random part of the rest. The seam
//! is exactly the operations the stores use, nothing more, so the simulation stays small
//! enough to trust.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Arc;

/// How [`Disk::open`] opens a file (always for reading and writing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Create it, or empty it if it exists.
    CreateEmpty,
    /// Create it if missing, keep its content otherwise.
    CreateOrKeep,
    /// It must exist.
    Existing,
}

/// One open file. Positional reads and writes only: the stores always know the offset.
pub trait DiskFile: Send + Sync + 'static {
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Make the content and length durable (`fdatasync`).
    fn sync_data(&self) -> io::Result<()>;
}

/// The operations the stores perform on a file system.
pub trait Disk: Send + Sync + 'static {
    /// Create `dir` and its missing parents, each made durable in its parent.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// A whole file; `NotFound` when it does not exist.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// The names of the entries of `dir` (names that are not UTF-8 are left out: the stores
    /// name every file themselves).
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn DiskFile>>;
    /// Replace `to` with `from` atomically (both in one directory).
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Make the creations, renames and removals inside `dir` durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// A shared handle to the disk the stores use.
pub type SharedDisk = Arc<dyn Disk>;

/// The operating system's file system.
#[derive(Debug, Clone, Copy, Default)]
pub struct OsDisk;

impl OsDisk {
    pub fn shared() -> SharedDisk {
        Arc::new(OsDisk)
    }
}

impl DiskFile for File {
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        FileExt::write_all_at(self, buf, offset)
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        FileExt::read_exact_at(self, buf, offset)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        File::set_len(self, len)
    }
    fn sync_data(&self) -> io::Result<()> {
        File::sync_data(self)
    }
}

impl Disk for OsDisk {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        // Find the first missing ancestor, create the chain, then fsync each new entry's
        // parent: a directory created but not recorded in its parent can vanish in a power
        // cut together with everything later written into it.
        let mut missing = Vec::new();
        let mut at = Some(dir);
        while let Some(d) = at {
            if d.as_os_str().is_empty() || d.exists() {
                break;
            }
            missing.push(d);
            at = d.parent();
        }
        if missing.is_empty() {
            return Ok(());
        }
        // Owner only: the log holds every value ever written.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        for d in missing.iter().rev() {
            match d.parent() {
                Some(p) if !p.as_os_str().is_empty() => self.sync_dir(p)?,
                _ => self.sync_dir(Path::new("."))?,
            }
        }
        Ok(())
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        fs::read(path)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for item in fs::read_dir(dir)? {
            if let Ok(name) = item?.file_name().into_string() {
                names.push(name);
            }
        }
        Ok(names)
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn DiskFile>> {
        let mut options = OpenOptions::new();
        // Owner only, like the directories (a created file; an existing one keeps its mode).
        options.read(true).write(true).mode(0o600);
        match mode {
            OpenMode::CreateEmpty => options.create(true).truncate(true),
            OpenMode::CreateOrKeep => options.create(true).truncate(false),
            OpenMode::Existing => &mut options,
        };
        Ok(Arc::new(options.open(path)?))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}

/// The directory holding `path` (the working directory for a bare file name).
pub fn parent_dir(path: &Path) -> io::Result<&Path> {
    match path.parent() {
        Some(p) if p.as_os_str().is_empty() => Ok(Path::new(".")),
        Some(p) => Ok(p),
        None => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the path names no file",
        )),
    }
}

/// Whether `path` can be read or entered by anyone but its owner (group or other bits set):
/// the agent warns, since the data directory holds every stored value.
pub fn open_to_others(path: &Path) -> io::Result<bool> {
    Ok(fs::metadata(path)?.permissions().mode() & 0o077 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_the_stores_create_is_for_the_owner_only() {
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("data/log");
        OsDisk.create_dir_all(&data).unwrap();
        for dir in [root.path().join("data"), data.clone()] {
            let mode = fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700, "{}", dir.display());
            assert!(!open_to_others(&dir).unwrap());
        }
        let file = data.join("vote");
        crate::fsutil::write_atomic(&file, b"v").unwrap();
        let mode = fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        fs::set_permissions(&data, fs::Permissions::from_mode(0o755)).unwrap();
        assert!(open_to_others(&data).unwrap());
    }
}
